"""NDJSON in and out: one compact JSON object per line.

The writer encodes with orjson and never emits kombu's ``{"__type__": ...}``
tags; the reader is lazy, line-numbered, and never lets a bad line stop the
good ones (unless ``--strict``).
"""

import base64
import datetime
import decimal
import uuid

import orjson

MAX_LINE_BYTES = 1 << 20  # 1 MiB: longer lines are errors, not memory blow-ups

_OPTIONS = orjson.OPT_NON_STR_KEYS


def _default(value):
    """Encode what orjson does not: sets, bytes, odd numbers, kombu/celery objects."""
    if isinstance(value, (set, frozenset)):
        return list(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return base64.b64encode(raw).decode("ascii")
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, tuple):  # namedtuples reach here; plain tuples never do
        return list(value)
    return repr(value)


def dumps(record):
    """Encode one record as a compact JSON line, newline included."""
    return orjson.dumps(record, default=_default, option=_OPTIONS | orjson.OPT_APPEND_NEWLINE)


class Writer:
    """Writes records to a binary stream; flushes per line when asked to.

    ``flush_each`` is set for a TTY or ``-u``; otherwise output is block
    buffered and flushed by ``close()``. A closed pipe surfaces as
    ``BrokenPipeError``, which the shared entry wrapper turns into a quiet exit.
    """

    def __init__(self, stream, flush_each=False):
        self._stream = stream
        self._flush_each = flush_each
        self.count = 0

    def write(self, record):
        self._stream.write(dumps(record))
        self.count += 1
        if self._flush_each:
            self._stream.flush()

    def write_encoded(self, line):
        """Write a line already encoded by ``dumps`` (hot paths batch their own)."""
        self._stream.write(line)
        self.count += 1
        if self._flush_each:
            self._stream.flush()

    def flush(self):
        self._stream.flush()


class Reader:
    """Reads NDJSON objects lazily from files or ``-`` (stdin).

    Bad lines are reported as ``PROG: FILE:LINE: reason`` through ``report``
    and skipped; ``bad_lines`` counts them so the command can exit 65.
    With ``strict`` the first bad line raises ``DataError`` instead.
    """

    def __init__(self, paths, stdin, report, strict=False):
        self.paths = list(paths) or ["-"]
        self._stdin = stdin
        self._report = report
        self.strict = strict
        self.bad_lines = 0

    def lines(self):
        """Yield ``(source, line_number, bytes)`` for each non-blank line that fits."""
        for path in self.paths:
            if path == "-":
                yield from self._lines_of("<stdin>", self._stdin)
                continue
            try:
                stream = open(path, "rb")
            except OSError as exc:
                self.bad(path, 0, exc.strerror or str(exc))
                continue
            with stream:
                yield from self._lines_of(path, stream)

    def _lines_of(self, source, stream):
        number = 0
        while True:
            line = stream.readline(MAX_LINE_BYTES + 1)
            if not line:
                return
            number += 1
            if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
                while line and not line.endswith(b"\n"):  # discard the rest of it
                    line = stream.readline(MAX_LINE_BYTES)
                self.bad(source, number, f"line longer than {MAX_LINE_BYTES} bytes")
                continue
            if line.strip():
                yield source, number, line

    def records(self):
        """Yield each line that is a JSON object; report the others."""
        for _, _, record in self.numbered_records():
            yield record

    def numbered_records(self):
        """``(source, line_number, record)`` for each JSON object, so a consumer can report a bad one with ``bad``."""
        for source, number, line in self.lines():
            record = self._parse(source, number, line)
            if record is not None:
                yield source, number, record

    def values(self, fields):
        """Yield plain-text lines as they are, or the first of ``fields`` of a JSON object.

        This is how ids and queue names are piped in: ``a1b2``, or
        ``{"uuid": "a1b2", ...}``. Dotted fields (``request.id``) look inside.
        A JSON string (``jq .uuid`` without ``-r``) counts as its text; other
        JSON that is not an object, and bytes that are not UTF-8, are bad lines
        rather than names nobody has.
        """
        for source, number, line in self.lines():
            text = line.strip()
            if not text.startswith((b"{", b"[", b'"')):
                try:
                    value = text.decode("utf-8")
                except UnicodeDecodeError:
                    self.bad(source, number, "not UTF-8 text")
                    continue
                yield value
                continue
            if text.startswith(b'"'):
                try:
                    value = orjson.loads(text)
                except orjson.JSONDecodeError as exc:
                    self.bad(source, number, f"not JSON: {exc}")
                    continue
                yield value
                continue
            record = self._parse(source, number, line)
            if record is None:
                continue
            value = first_field(record, fields)
            if value is None:
                self.bad(source, number, f"no {' or '.join(fields)} field")
            else:
                yield str(value)

    def _parse(self, source, number, line):
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            self.bad(source, number, f"not JSON: {exc}")
            return None
        if not isinstance(record, dict):
            self.bad(source, number, f"not a JSON object but {type(record).__name__}")
            return None
        return record

    def bad(self, source, number, reason):
        from celops.core.exits import DataError

        self.bad_lines += 1
        where = f"{source}:{number}" if number else source
        if self.strict:
            raise DataError(f"{where}: {reason}")
        self._report(f"{where}: {reason}")


def first_field(record, fields):
    """The value of the first field present in ``record``; dots walk into objects."""
    for field in fields:
        value = record
        for part in field.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None:
            return value
    return None
