"""The terminal: curses set up and always restored, the keyboard, repaints at most N a second.

curses (the standard library) rather than textual or urwid: nothing to
install, about 10 ms to import, and a screen that is a grid of cells is all
cev-top draws. The loop here is the screen thread: it never applies events
(the feeds do, in their threads) and holds the model's lock only while it
copies a view, so a slow terminal slows the repaints, never the reading.
"""

import base64
import os
import time

from celops.core.exits import ConfigError

IDLE_REPAINT = 1.0  # seconds: ages and heartbeats move even when no event comes


def check_terminal(environ, stdout_fd=1):
    """ConfigError (exit 78) when there is nothing cev-top can draw on, in one line, before anything starts."""
    term = environ.get("TERM", "")
    if term in ("", "dumb", "unknown"):
        raise ConfigError(f"cannot draw on this terminal (TERM={term or 'unset'}): cev-top needs one that moves "
                          f"the cursor, such as xterm-256color")
    if not os.isatty(stdout_fd):
        raise ConfigError("standard output is not a terminal: cev-top draws on one (cev-cam writes records)")
    import curses

    for variable in ("LINES", "COLUMNS"):  # curses would take these over the terminal's own size
        environ.pop(variable, None)
    try:
        curses.setupterm(term, stdout_fd)
    except curses.error:
        raise ConfigError(f"cannot draw on this terminal: TERM={term} is not in the terminfo database") from None


def keyboard_from_tty(records_on_stdin):
    """Keys from /dev/tty whenever standard input is not the terminal (a pipe of records, /dev/null under
    a scheduler: curses would read it and spin); records on it move to another descriptor first.

    Returns the binary stream of records when ``records_on_stdin``, else None.
    """
    if os.isatty(0):
        return None
    records = os.fdopen(os.dup(0), "rb") if records_on_stdin else None
    try:
        tty = os.open("/dev/tty", os.O_RDWR)
    except OSError as exc:
        raise ConfigError(f"no keyboard: cannot open /dev/tty ({exc.strerror})") from None
    os.dup2(tty, 0)
    os.close(tty)
    return records


class CursesCanvas:
    """``draw``'s canvas on a curses window; styles become colours, or bold and reverse in monochrome."""

    def __init__(self, window, attributes, unicode):
        self.window = window
        self.height, self.width = window.getmaxyx()
        self.attributes = attributes
        self.unicode = unicode

    def put(self, y, x, value, style="normal"):
        if not self.unicode:  # a C or Latin-1 locale: what it cannot show becomes ? (… becomes ~)
            value = value.replace("…", "~").encode("ascii", "replace").decode()
        if 0 <= y < self.height and x < self.width:
            try:
                self.window.addnstr(y, x, value, self.width - x, self.attributes.get(style, 0))
            except Exception:  # curses.error: the last cell of the screen; nothing to lose
                pass


def _attributes(curses, colour):
    attributes = {"normal": 0, "title": curses.A_BOLD, "selected": curses.A_REVERSE, "dim": curses.A_DIM,
                  "bad": curses.A_BOLD, "warn": 0, "good": 0}
    if colour:
        curses.start_color()
        curses.use_default_colors()
        for number, (style, foreground) in enumerate((("bad", curses.COLOR_RED), ("good", curses.COLOR_GREEN),
                                                      ("warn", curses.COLOR_YELLOW)), 1):
            curses.init_pair(number, foreground, -1)
            attributes[style] = curses.color_pair(number)
    return attributes


def copy_to_clipboard(value):
    """OSC 52: the terminal (xterm, tmux, iTerm2, over ssh too) puts ``value`` on the clipboard."""
    os.write(1, b"\x1b]52;c;" + base64.b64encode(value.encode()) + b"\x07")


def run(ui, frame, redraw_per_second, environ):
    """Draw and read keys until ``ui.quit``; the terminal is restored whatever ends it: q, Ctrl-C (exit 130),
    SIGTERM or SIGHUP (a normal end), an error."""
    import curses
    import locale
    import signal

    locale.setlocale(locale.LC_ALL, "")
    # the codeset curses writes in (Python's UTF-8 mode makes getpreferredencoding say utf-8 in a C locale)
    unicode = locale.nl_langinfo(locale.CODESET).lower().replace("-", "") == "utf8"
    stop = {signum: signal.signal(signum, lambda *_: setattr(ui, "quit", True))
            for signum in (signal.SIGTERM, signal.SIGHUP)}
    window = curses.initscr()
    try:
        curses.noecho()
        curses.cbreak()  # not raw: Ctrl-C stays a SIGINT, which ends the loop through the finally below
        window.keypad(True)
        curses.set_escdelay(25)
        try:
            curses.curs_set(0)
        except curses.error:
            pass
        attributes = _attributes(curses, curses.has_colors() and "NO_COLOR" not in environ)
        _loop(ui, frame, window, curses, lambda: CursesCanvas(window, attributes, unicode), 1.0 / redraw_per_second)
    finally:
        window.keypad(False)
        curses.nocbreak()
        curses.echo()
        curses.endwin()
        for signum, handler in stop.items():
            signal.signal(signum, handler)


def _loop(ui, frame, window, curses, canvas, interval):
    """Repaint when a key was pressed, or, at most every ``interval`` s, when events or the status line moved
    (once a second anyway: ages grow); wait for keys in between."""
    from celops.top.draw import draw

    drawn_at, drawn, dirty = 0.0, None, True
    window.timeout(max(1, int(interval * 1000)))
    while not ui.quit:
        now = time.monotonic()
        seen = (ui.model.records, ui.status)
        if dirty or (now - drawn_at >= interval and (seen != drawn or now - drawn_at >= IDLE_REPAINT)):
            screen = canvas()
            ui.refresh(limit=max(screen.height, 1) * 4)
            window.erase()
            draw(screen, ui, frame())
            window.noutrefresh()
            curses.doupdate()
            drawn_at, drawn, dirty = now, seen, False
        key = _read_key(window, curses)
        if key == "KEY_RESIZE":
            _follow_resize(window, curses)
        elif key is not None:
            ui.key(key)
        dirty = key is not None


def _follow_resize(window, curses):
    """Take the terminal's new size and repaint every cell: after a resize, what curses thinks is on the
    screen is not what is there."""
    size = os.get_terminal_size(1)
    curses.resizeterm(size.lines, size.columns)
    window.clear()


def _read_key(window, curses):
    """The next key as ``ui.key`` takes it: a character, or a curses key name ("KEY_UP"); None after the timeout."""
    try:
        key = window.get_wch()
    except curses.error:
        return None
    if isinstance(key, int):
        return curses.keyname(key).decode("ascii", "replace")
    return key
