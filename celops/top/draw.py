"""The screen laid out on a canvas: header, workers, queues, tasks, ticker, status line; or an overlay.

A canvas is anything with ``height``, ``width``, ``unicode`` and
``put(y, x, text, style)``; the curses one lives in ``terminal``, and
``TextCanvas`` here gives plain lines, so the whole screen is checked in
tests without a terminal. Every value a worker sent goes through
``render.text``: control characters are shown escaped, never sent.

Styles: normal, title (pane headings), selected, bad, good, warn, dim.
At 80x24 every pane gets a few rows; taller terminals give the rest to tasks.
"""

import datetime

from celops.core.render import text
from celops.core.redact import redact_url
from celops.top.ui import HELP

STATE_STYLES = {**dict.fromkeys(("FAILURE", "REJECTED"), "bad"), "SUCCESS": "good",
                **dict.fromkeys(("RETRY", "REVOKED"), "warn")}
SPARK_UNICODE, SPARK_ASCII = "▁▂▃▄▅▆▇█", "_.-=+*#@"
TRENDS_UNICODE, TRENDS_ASCII = {1: "↑", -1: "↓", 0: "→"}, {1: "^", -1: "v", 0: "="}


class TextCanvas:
    """Plain lines of ``width`` characters, for tests and for anything that wants the screen as text;
    ``styles`` holds the style each line was drawn in (the last one other than normal)."""

    unicode = True

    def __init__(self, height=24, width=80):
        self.height, self.width = height, width
        self.lines = [[" "] * width for _ in range(height)]
        self.styles = {}

    def put(self, y, x, value, style="normal"):
        if 0 <= y < self.height:
            for offset, char in enumerate(value[:max(0, self.width - x)]):
                self.lines[y][x + offset] = char
            self.styles[y] = style if style != "normal" else self.styles.get(y, "normal")

    def text(self):
        return "\n".join("".join(line).rstrip() for line in self.lines)


class Frame:
    """What the header says beyond the model: the broker (redacted), where events come from, feed trouble."""

    def __init__(self, broker_url, source, problem=None):
        self.broker = redact_url(broker_url) if broker_url else "-"
        self.source = source
        self.problem = problem


def draw(canvas, ui, frame):
    """Lay the whole screen out on ``canvas`` from ``ui.view``."""
    view = ui.view
    height, width = canvas.height, canvas.width
    _header(canvas, view.header, view.workers, frame, width)
    if ui.overlay == "help":
        _lines_pane(canvas, 2, height - 4, "HELP (Esc closes)", _help_lines(), ui.scroll, width)
    elif ui.overlay == "details":
        _lines_pane(canvas, 2, height - 4, "TASK DETAILS (Esc closes; Up/Down, g/G scroll)",
                    details_lines(ui.model.task_details(ui.details_uuid), ui.details_uuid), ui.scroll, width)
    else:
        _panes(canvas, ui, view, height, width)
    status = ui.status_line() or frame.problem or ""
    canvas.put(height - 1, 0, _fit(status, width), "selected" if ui.prompt or ui.confirm else "normal")


def _header(canvas, header, workers, frame, width):
    up = sum(1 for worker in workers if worker.alive)
    totals = header.totals
    rates = header.rates
    line1 = f"cev-top [{frame.source}]  workers {up} up, {len(workers) - up} down  gaps {header.gaps}"
    if header.invalid:
        line1 += f"  invalid {header.invalid}"
    line1 += f"  {frame.broker}"
    line2 = (f"events {header.events} ({_rate(rates[0])})  succeeded {totals['task-succeeded']} ({_rate(rates[1])})"
             f"  failed {totals['task-failed']} ({_rate(rates[2])})  retried {totals['task-retried']} "
             f"({_rate(rates[3])})")
    canvas.put(0, 0, _fit(line1, width), "title")
    canvas.put(1, 0, _fit(line2, width), "bad" if header.gaps else "normal")


def pane_heights(height, workers, queues, ticker):
    """Rows (besides its title) of the workers, queues, tasks and ticker panes in ``height`` lines.

    Header 2 and status 1, a title and a column heading for each table, a
    title for the ticker; each small pane gets what it has up to a share of
    the screen, at least one row; tasks get the rest.
    """
    room = height - 10
    share = max(1, room // 6)
    small = {pane: max(1, min(count, share)) for pane, count in (("workers", workers), ("queues", queues),
                                                                 ("ticker", ticker))}
    task_rows = room - sum(small.values())
    while task_rows < 3 and max(small.values()) > 1:  # tasks first: take from the largest small pane
        small[max(small, key=small.get)] -= 1
        task_rows += 1
    return small["workers"], small["queues"], max(0, task_rows), small["ticker"]


def _panes(canvas, ui, view, height, width):
    worker_rows, queue_rows, task_rows, ticker_rows = pane_heights(height, len(view.workers), len(view.queues),
                                                                  len(view.ticker))
    y = 2
    y = _table(canvas, y, worker_rows, ui, "workers", "WORKERS", WORKER_COLUMNS, view.workers, width)
    y = _table(canvas, y, queue_rows, ui, "queues", "QUEUES" + (f"  ({view.header.queue_problem})"
                                                                if view.header.queue_problem else ""),
               QUEUE_COLUMNS, view.queues, width, canvas.unicode)
    sort = f"TASKS {view.header.matching} of {view.header.task_count}  sort {ui.sort_key}"
    if ui.task_filter:
        sort += f"  filter {ui.task_filter.text}"
    y = _table(canvas, y, task_rows, ui, "tasks", sort, TASK_COLUMNS, view.tasks, width)
    canvas.put(y, 0, _fit("FAILURES AND RETRIES", width), "title")
    if not view.ticker:
        canvas.put(y + 1, 0, _fit("  (none yet)", width), "dim")
    for offset, (stamp, kind, name, uuid, exception) in enumerate(reversed(view.ticker[-ticker_rows:])):
        if kind == "celops-gap":
            line = f"{_clock(stamp)} GAP      events lost or maybe lost: {text(exception)}"
        else:
            line = f"{_clock(stamp)} {kind[5:]:8} {text(name):24} {uuid[:8]} {text(exception)}"
        canvas.put(y + 1 + offset, 0, _fit(line, width), "warn" if kind == "task-retried" else "bad")


def _table(canvas, y, rows, ui, pane, title, columns, items, width, unicode=True):
    """A pane: its title line with column headings, then up to ``rows`` rows around the selection."""
    heading = "  ".join(f"{label:{size}}" if size > 0 else label for label, size, _ in columns)
    focused = ui.focus == pane
    marker = ">" if focused else " "
    canvas.put(y, 0, _fit(f"{marker}{title}", width), "title")
    canvas.put(y + 1, 0, _fit(" " + heading, width), "dim")
    index = ui.index[pane]
    first = max(0, min(index - rows // 2, len(items) - rows))
    visible = items[first:first + rows]
    for offset, item in enumerate(visible):
        cells = [cell(item, unicode) for _, _, cell in columns]
        line = " " + "  ".join(f"{value[:size]:{size}}" if size > 0 else value for value, (_, size, _) in
                               zip(cells, columns))
        selected = focused and first + offset == index
        canvas.put(y + 2 + offset, 0, _fit(line, width), "selected" if selected else _row_style(pane, item))
    if not items and rows:
        canvas.put(y + 2, 0, _fit("  (none yet)", width), "dim")
    return y + 2 + rows


def _row_style(pane, item):
    if pane == "tasks":
        return STATE_STYLES.get(item.state, "normal")
    if pane == "workers":
        return "normal" if item.alive else "bad"
    return "normal"


def _spark(history, unicode):
    known = [value for value in history if value is not None]
    if not known:
        return ""
    chars = SPARK_UNICODE if unicode else SPARK_ASCII
    low, high = min(known), max(known)
    span = (high - low) or 1
    return "".join(" " if value is None else chars[(value - low) * (len(chars) - 1) // span] for value in history)


# (heading, width (0: the rest), cell function)
WORKER_COLUMNS = [
    ("WORKER", 24, lambda w, _=True: text(w.hostname)),
    ("ALIVE", 7, lambda w, _=True: "yes" if w.alive else "OFFLINE"),
    ("ACTIVE", 6, lambda w, _=True: _number(w.active)),
    ("DONE", 8, lambda w, _=True: _number(w.processed)),
    ("LOAD", 9, lambda w, _=True: " ".join(f"{value:.2f}" for value in (w.loadavg or [])[:2]) or "-"),
    ("BEAT", 5, lambda w, _=True: _age(w.beat_age)),
    ("VERSION", 0, lambda w, _=True: text(w.version)),
]
QUEUE_COLUMNS = [
    ("QUEUE", 24, lambda q, _=True: text(q.name)),
    ("LENGTH", 8, lambda q, _=True: _number(q.messages)),
    ("UNACKED", 8, lambda q, _=True: _number(q.unacked)),
    ("CONSUMERS", 9, lambda q, _=True: _number(q.consumers)),
    ("TREND", 0, lambda q, unicode=True: (TRENDS_UNICODE if unicode else TRENDS_ASCII)[q.trend] + " "
                                         + _spark(q.history, unicode)),
]
TASK_COLUMNS = [
    ("STATE", 8, lambda t, _=True: t.state),
    ("NAME", 24, lambda t, _=True: text(t.name)),
    ("WORKER", 16, lambda t, _=True: text(t.hostname)),
    ("RUNTIME", 7, lambda t, _=True: _seconds(t.runtime)),
    ("AGE", 4, lambda t, _=True: _age(t.age)),
    ("ID", 0, lambda t, _=True: t.uuid),
]


def details_lines(details, uuid):
    """The details of one task, as lines: fields, arguments, result or exception, traceback, timeline."""
    if details is None:
        return [f"task {uuid} is no longer in the table (--max-tasks)"]
    record, fields, timeline = details
    lines = [f"{key:10} {text(record.get(key))}" for key in ("uuid", "name", "state", "hostname")]
    lines.append(f"{'runtime':10} {_seconds(record.get('runtime'))}   retries {text(fields.get('retries'))}"
                 f"   wait {_seconds(record.get('wait'))}")
    for key in ("args", "kwargs", "result", "exception", "eta", "expires", "queue", "routing_key", "root_id",
                "parent_id"):
        if key in fields:
            lines.append(f"{key:10} {text(fields[key])}")
    if "traceback" in fields:
        lines.append("traceback:")
        lines.extend("  " + text(line) for line in str(fields["traceback"]).rstrip().splitlines())
    lines.append("timeline:")
    lines.extend(f"  {_clock(stamp)}  {kind:16} {text(host)}" for kind, stamp, host in timeline)
    return lines


def _help_lines():
    return [f"{keys:24} {what}" for keys, what in HELP]


def _lines_pane(canvas, y, rows, title, lines, scroll, width):
    """A title and ``rows`` lines from ``scroll`` on (past the end: the last screenful)."""
    canvas.put(y, 0, _fit(title, width), "title")
    scroll = max(0, min(scroll, len(lines) - rows))
    for offset, line in enumerate(lines[scroll:scroll + rows]):
        canvas.put(y + 1 + offset, 0, _fit(line, width), "bad" if line.startswith("exception") else "normal")


def _fit(line, width):
    return line if len(line) <= width else line[:max(width - 1, 0)] + "…"


def _rate(per_second):
    return f"{per_second:.1f}/s" if per_second < 10 else f"{per_second:.0f}/s"


def _number(value):
    return "-" if value is None else str(value)


def _seconds(value):
    if value is None:
        return "-"
    return f"{value * 1000:.0f}ms" if value < 1 else f"{value:.1f}s" if value < 100 else f"{value:.0f}s"


def _age(value):
    if value is None:
        return "-"
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if value >= size:
            return f"{value // size:.0f}{unit}"
    return f"{value:.0f}s"


def _clock(stamp):
    if stamp.__class__ not in (int, float):
        return "--:--:--"
    try:
        return datetime.datetime.fromtimestamp(stamp).strftime("%H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return "--:--:--"
