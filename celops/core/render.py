"""On a terminal every command shows its records as an aligned table, one line per record; elsewhere NDJSON.

--format chooses: ndjson (the default off a terminal, byte for byte what
pipes and scripts read), table (the default on a terminal) or tsv (a heading
line, then tab-separated columns; tabs and newlines in values escaped).
The columns of each record type, and how wide each may grow, are declared
with the type in celops/records.py; fields of the DETAILS column show as
field=value. Epoch seconds show as local clock times, null as "-".

Records are drawn a batch at a time: a cq-len --watch tick, cev-dump catching
up with the stream, the end of a one-shot command, or each record with -u;
at most 500 records wait. Streams of events, tasks and snapshots start at the
declared widths, so their columns stay put; other tables fit each batch's
longest values. A column never narrows within a run. On a terminal a column
never grows past its declared width, the line ends at the terminal's edge
($COLUMNS, else the terminal's size), longer values are cut with "…", control
characters are shown escaped, and colour marks failures and successes (not
with NO_COLOR or TERM=dumb). A table sent to a pipe is neither cut nor coloured.
"""

import datetime
import os
import re

import orjson

from celops.records import RECORDS

BATCH_LIMIT = 500  # records held at most before they are drawn, however long the command waits to flush
FALLBACK_WIDTH = 80

_RED, _GREEN, _YELLOW, _BOLD, _RESET = "\033[31m", "\033[32m", "\033[33m", "\033[1m", "\033[0m"
# Values of the "type" and "state" columns that deserve a colour.
VALUE_COLOURS = {
    **dict.fromkeys(("task-failed", "task-rejected", "FAILURE", "REJECTED", "error", "celops-gap", "crit"), _RED),
    **dict.fromkeys(("task-succeeded", "SUCCESS", "worker-online"), _GREEN),
    **dict.fromkeys(("task-retried", "task-revoked", "RETRY", "REVOKED", "worker-offline", "warn", "unknown"), _YELLOW),
}
COLOURED_FIELDS = ("type", "state", "severity")

# C0 and C1 controls (ESC among them) are shown escaped: a worker's event must not drive the terminal.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


class Column:
    """One column: the field it shows, its heading, its widest on a terminal, whether it holds epoch seconds."""

    def __init__(self, field, limit, epoch):
        self.field = field
        self.limit = limit
        self.epoch = epoch
        self.heading = field.upper()


class Layout:
    """The columns one record type shows; ``details`` fields are gathered into the last column."""

    def __init__(self, columns, details, epoch_fields, fixed=False):
        self.columns = columns
        self.fixed = fixed
        self.details = details
        self.epoch_fields = epoch_fields
        self.headings = tuple(column.heading for column in columns) + (("DETAILS",) if details else ())

    def cells(self, record):
        cells = [text(record.get(column.field), column.epoch) for column in self.columns]
        if self.details:
            cells.append(" ".join(f"{field}={text(record[field], field in self.epoch_fields)}"
                                  for field in self.details if record.get(field) is not None))
        return cells


def layout_for(record):
    """The layout of ``record``'s type; "first record" types keep only the columns this record has."""
    kind = record.get("type")
    if not isinstance(kind, str):  # not a record of the vocabulary: every field, as it comes
        fields = [field for field in record if field != "type"]
        return Layout([Column(field, 40, False) for field in fields], (), set())
    spec = RECORDS.get(kind, RECORDS["event"])  # an event's type is the event type (task-failed...)
    epoch_fields = _epoch_fields(spec)
    shown = (lambda field: True) if spec["layout"] == "fixed" else record.__contains__
    columns = [Column(field, limit, field in epoch_fields) for field, limit in spec["columns"].items()
               if shown(field)]
    return Layout(columns, tuple(filter(shown, spec.get("details", ()))), epoch_fields, spec["layout"] == "fixed")


def _epoch_fields(spec):
    """Fields the vocabulary says are floats of epoch seconds: they are shown as local times."""
    fields = set()
    for names, meaning in spec["fields"].items():
        if meaning.startswith("float") and "epoch seconds" in meaning:
            fields.update(names.split(", "))
    return fields


def text(value, epoch=False):
    """A value as one line of plain text: times as local clock times, containers compact, controls escaped."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if epoch and isinstance(value, (int, float)):
        try:
            return datetime.datetime.fromtimestamp(value).strftime("%H:%M:%S.%f")[:12]
        except (OverflowError, OSError, ValueError):
            return str(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict) and all(_is_scalar(item) for item in value.values()):
        return "{" + ",".join(f"{key}:{text(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list) and all(_is_scalar(item) for item in value):
        return ",".join(text(item) for item in value)
    if not isinstance(value, str):
        value = orjson.dumps(value, default=repr).decode()
    return _CONTROL.sub(lambda match: _ESCAPES.get(match.group(), f"\\x{ord(match.group()):02x}"), value)


def _is_scalar(value):
    return value is None or isinstance(value, (str, int, float, bool))


class TableWriter:
    """Writes records as table rows (or TSV) to a binary stream; the same calls as ndjson.Writer.

    ``width`` is the terminal's width, or None off a terminal (nothing is
    cut). ``colour`` is for terminals only. A heading line is written whenever
    the columns change (cev-dump's gaps share the events' columns, so they
    do not interrupt them).
    """

    def __init__(self, stream, tsv=False, width=None, colour=False, flush_each=False):
        self._stream = stream
        self._tsv = tsv
        self._width = width
        self._colour = colour
        self._flush_each = flush_each
        self._pending = []
        self._widths = {}  # headings -> widths so far: they only grow
        self._headings = None
        self.count = 0

    def write(self, record):
        self._pending.append(record)
        self.count += 1
        if self._flush_each or len(self._pending) >= BATCH_LIMIT:
            self.flush()

    @staticmethod
    def encode(record):
        """A record as ``write_encoded`` takes it: tables are drawn from records."""
        return record

    def write_encoded(self, lines):
        """What ``encode`` made of a record, or lines encoded by ``ndjson.dumps`` (cev-dump's hot path batches
        its own)."""
        if isinstance(lines, dict):
            return self.write(lines)
        for line in lines.splitlines():
            self.write(orjson.loads(line))

    def flush(self):
        rows = [(layout_for(record), record) for record in self._pending]
        self._pending = []
        out = []
        for start, end in _runs(rows):
            layout = rows[start][0]
            batch = [layout.cells(record) for _, record in rows[start:end]]
            out.extend(self._tsv_lines(layout, batch) if self._tsv else self._table_lines(layout, batch))
        if out:
            self._stream.write("".join(out).encode("utf-8", "replace"))
        self._stream.flush()

    def _tsv_lines(self, layout, batch):
        if layout.headings != self._headings:
            self._headings = layout.headings
            yield "\t".join(heading.lower() for heading in layout.headings) + "\n"
        for cells in batch:
            yield "\t".join(cells) + "\n"

    def _table_lines(self, layout, batch):
        limits = [column.limit for column in layout.columns] + [None] * bool(layout.details)
        widths = self._widths.setdefault(layout.headings, self._first_widths(layout))
        for index, limit in enumerate(limits):
            longest = max([widths[index]] + [len(cells[index]) for cells in batch])
            widths[index] = min(longest, limit) if self._width and limit else longest
        if layout.headings != self._headings:
            self._headings = layout.headings
            yield self._line(layout.headings, widths, header=True)
        for cells in batch:
            yield self._line(cells, widths)

    @staticmethod
    def _first_widths(layout):
        """Streams of fixed layouts start at the vocabulary's widths, so that later lines need not widen them."""
        widths = [column.limit if layout.fixed else len(column.heading) for column in layout.columns]
        return widths + [len("DETAILS")] * bool(layout.details)

    def _line(self, cells, widths, header=False):
        parts, used = [], 0
        last = len(cells) - 1
        for index, (cell, width) in enumerate(zip(cells, widths)):
            if self._width:
                room = self._width - used
                if room <= 0:
                    break
                width = min(width, room)
                cell = _cut(cell, room if index == last else width)
            padded = cell if index == last else cell.ljust(width)
            used += len(padded) + 2
            parts.append(self._paint(padded, cell, header, index))
        return "  ".join(parts).rstrip(" ") + "\n"

    def _paint(self, padded, cell, header, index):
        if not self._colour:
            return padded
        if header:
            return f"{_BOLD}{padded}{_RESET}"
        colour = VALUE_COLOURS.get(cell) if self._headings[index].lower() in COLOURED_FIELDS else None
        return f"{colour}{padded}{_RESET}" if colour else padded


def _cut(cell, room):
    return cell if len(cell) <= room else cell[:max(room - 1, 0)] + "…"


def _runs(rows):
    """``(start, end)`` of each run of consecutive rows with the same headings."""
    start = 0
    for index in range(1, len(rows) + 1):
        if index == len(rows) or rows[index][0].headings != rows[start][0].headings:
            yield start, index
            start = index


def writer(stream, format, terminal, unbuffered, environ=os.environ):
    """The writer for ``--format`` table or tsv; ``terminal`` says whether ``stream`` is one."""
    colour = terminal and format == "table" and "NO_COLOR" not in environ and environ.get("TERM") != "dumb"
    width = terminal_width(stream, environ) if terminal and format == "table" else None
    return TableWriter(stream, tsv=format == "tsv", width=width, colour=colour, flush_each=unbuffered)


def terminal_width(stream, environ=os.environ):
    """$COLUMNS when set (shells and tests), else the terminal's own width."""
    try:
        return max(int(environ["COLUMNS"]), 20)
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(stream.fileno()).columns or FALLBACK_WIDTH
    except (AttributeError, OSError, ValueError):
        return FALLBACK_WIDTH
