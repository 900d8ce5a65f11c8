"""NDJSON in and out: one compact JSON object per line.

The writer encodes with orjson and never emits kombu's ``{"__type__": ...}``
tags; the reader is lazy, line-numbered, and never lets a bad line stop the
good ones (unless ``--strict``).
"""

import base64
import datetime
import decimal
import re
import uuid

import orjson

BLOCK_BYTES = 8192  # records written at once off a terminal: as Python's own buffer would
MAX_LINE_BYTES = 1 << 20  # 1 MiB: longer lines are errors, not memory blow-ups
BOM = b"\xef\xbb\xbf"

_JSON_SCALARS = re.compile(rb"^(-?\d+(\.\d+)?([eE][-+]?\d+)?|true|false|null)$")

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
    """Encode one record as a compact JSON line, newline included.

    Keys that are not strings (numbers, from a worker's reply) are written
    as strings; orjson is a third faster without that option, so it is
    tried without it first.
    """
    try:
        return orjson.dumps(record, default=_default, option=orjson.OPT_APPEND_NEWLINE)
    except orjson.JSONEncodeError:
        return orjson.dumps(record, default=_default, option=_OPTIONS | orjson.OPT_APPEND_NEWLINE)


class Writer:
    """Writes records to a binary stream; flushes per line when asked to.

    ``flush_each`` is set for a TTY or ``-u``; otherwise output is block
    buffered here, whatever buffering the stream has (Python makes stdout
    unbuffered under PYTHONUNBUFFERED, which many images set: a write per
    record), and written by ``flush()``, which the shared entry wrapper calls
    however a command ends. A closed pipe surfaces as ``BrokenPipeError``,
    which the entry wrapper turns into a quiet exit.
    """

    def __init__(self, stream, flush_each=False):
        self._stream = stream
        self._flush_each = flush_each
        self._pending = []
        self._pending_size = 0
        self.count = 0

    encode = staticmethod(dumps)

    def write(self, record):
        self.write_encoded(dumps(record))

    def write_encoded(self, line):
        """Write what ``encode`` made of a record, or lines encoded by ``dumps`` (hot paths batch their own)."""
        self.count += 1
        if self._flush_each:
            self._stream.write(line)
            self._stream.flush()
            return
        self._pending.append(line)
        self._pending_size += len(line)
        if self._pending_size >= BLOCK_BYTES:
            self._write_pending()

    def flush(self):
        self._write_pending()
        self._stream.flush()

    def _write_pending(self):
        if self._pending:
            lines, self._pending, self._pending_size = b"".join(self._pending), [], 0
            self._stream.write(lines)


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
            if number == 1 and line.startswith(BOM):  # written by some Windows tools: not part of the text
                line = line[len(BOM):]
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
        """``(source, line_number, record)`` for each line that is a JSON object, for per-line refusals."""
        for source, number, line in self.lines():
            record = self._parse(source, number, line)
            if record is not None:
                yield source, number, record

    def values(self, fields, ids=False):
        """Yield the names or ids of the input, one per line, by the rules of ``cli.NAMES_INPUT``.

        This is how ids and queue names are piped in: ``a1b2``, or
        ``{"uuid": "a1b2", ...}``. Dotted fields (``request.id``) look inside.
        Garbage is a bad line, never a name nobody has: it would be sent to
        the workers as a task id, or measured as a queue. ``ids``: the values
        are task ids, which hold no blanks.
        """
        from celops.core.cli import name_problem

        for source, number, line in self.lines():
            value, reason = self._value(source, number, line, fields, ids)
            if reason is None:
                problem = name_problem(value)
                reason = f"{problem} name: {value[:80]!r}" if problem else None
            if reason is None:
                yield value
            elif reason:  # "" means: already reported
                self.bad(source, number, reason)

    def _value(self, source, number, line, fields, ids):
        """``(value, None)``, or ``(None, why not)``."""
        text = line.strip()
        if text.startswith(b"{"):
            record = self._parse(source, number, line)
            if record is None:
                return None, ""
            value = first_field(record, fields)
            if value is None:
                return None, f"no {' or '.join(fields)} field"
            if not isinstance(value, str):
                return None, f"the {' or '.join(fields)} field is a {type(value).__name__}, not a string"
            return value, None
        if text.startswith((b"[", b'"')):
            try:
                value = orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                return None, f"not JSON: {exc}"
            if not isinstance(value, str):  # a JSON string (jq without -r) counts as its text
                return None, f"a JSON {type(value).__name__}, not a record or a name"
            return value, None
        if _JSON_SCALARS.match(text):
            return None, f"a bare JSON value ({text[:20].decode()}), not a name"
        if any(mark in text for mark in (b"{", b"}", b'"')):
            return None, "looks like broken JSON, not a name"
        if ids and any(blank in text for blank in (b" ", b"\t")):
            return None, "a blank inside a task id"
        try:
            return text.decode("utf-8"), None
        except UnicodeDecodeError:
            return None, "not UTF-8 text"

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
