"""Common options and option types, declared once: the parser every command builds.

The entry wrapper every command runs through is ``entry.py`` and the shell
completion helpers are ``completion_scripts.py``; both are reached through
here (``cli.execute``, ``cli.complete_with``).
"""

import argparse
import math
import re
import sys

from celops import __version__
from celops.core.exits import EXIT_MEANINGS, UsageError

# Declared in their own modules; commands reach them all through cli.
from celops.core.completion_scripts import (  # noqa: E402,F401
    EVENT_TYPE_NAMES, QUEUE_NAMES, WORKER_NAMES, complete_with, completion_preamble)
from celops.core.entry import IO, Context, ParserExit, execute  # noqa: E402,F401

EXIT_STATUS_SECTION = "; ".join(f"{int(status)} {meaning}" for status, meaning in EXIT_MEANINGS.items()) + "."

# The largest number any option takes: past it a value is a typo or an overflow
# waiting to happen (1e308 seconds), not a wish.
MAX_NUMBER = 10_000_000


class CommandParser(argparse.ArgumentParser):
    """argparse that writes to the injected streams and raises instead of exiting.

    ``man_sections`` holds extra man page sections as ``(HEADING, text)``.
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)
        self.io = None
        self.man_sections = [("EXIT STATUS", EXIT_STATUS_SECTION)]

    def _print_message(self, message, file=None):
        if not message:
            return
        if self.io is None:
            super()._print_message(message, file)
        elif file is sys.stderr:
            self.io.stderr.write(message)
        else:
            self.io.stdout.write(message.encode())

    def exit(self, status=0, message=None):
        if message:
            self._print_message(message, sys.stderr)
        raise ParserExit(status)

    def error(self, message):
        raise UsageError(f"{message}\n{self.format_usage().rstrip()}")


def command_parser(prog, description, *, broker=True, timeout=None, timeout_help=None, epilog=None,
                   formats=None, writes_records=True):
    """A parser with the common options every command shares, declared here once.

    ``timeout`` is the default of ``-t/--timeout``; each command says what
    its timeout means in ``timeout_help``. ``formats`` adds a command's own
    output formats to ``--format`` (see ``add_format_option``). A command
    that writes no records (``writes_records`` False: cev-top draws a screen)
    has neither ``--format`` nor ``-u``.
    """
    summary, _, rest = (description or "").strip().partition("\n")
    parser = CommandParser(prog=prog, description=description.strip(), epilog=epilog)
    parser.man_short_description = summary.rstrip(".")
    common = parser.add_argument_group("common options")
    if broker:
        common.add_argument(
            "-b", "--broker", metavar="URL",
            help="broker URL (redis://, rediss://, redis+socket://, sentinel://...?master_name=NAME, amqp://, "
                 "amqps://), or a failover list of them separated by ';'; default: $CELOPS_BROKER_URL, "
                 "$CELERY_BROKER_URL, the -A app's broker_url, then redis://localhost:6379/0")
        common.add_argument(
            "-A", "--app", metavar="MODULE[:ATTR]",
            help="Celery app whose broker_url, broker_transport_options and queues are used")
    common.add_argument(
        "-t", "--timeout", type=positive_float, default=timeout, metavar="SECONDS",
        help=timeout_help or "give up on the broker after this long")
    if writes_records:
        common.add_argument("-u", "--unbuffered", action="store_true",
                            help="flush after every record (NDJSON does on a terminal by itself)")
        add_format_option(common, formats or {})
    common.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")
    common.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


OUTPUT_FORMATS = {"ndjson": "NDJSON records", "table": "an aligned table for people",
                  "tsv": "tab-separated columns with a heading line"}


def add_destination_option(group, meaning):
    """``-d/--destination W1@HOST,W2@HOST``: worker names, comma-separated and repeatable, completed from the
    workers that answer; ``meaning`` says what naming them does."""
    complete_with(group.add_argument(
        "-d", "--destination", action="extend", type=name_list("worker name"), metavar="W1@HOST,W2@HOST",
        help=meaning), WORKER_NAMES)


def add_format_option(group, formats):
    """``--format``: the same records as NDJSON, a table or TSV, plus ``formats`` {name: what} of the command's own.

    With no --format, a terminal gets the table and anything else NDJSON,
    byte for byte (as gh, kubectl and ls choose).
    """
    choices = {**OUTPUT_FORMATS, **formats}
    group.add_argument("--format", choices=list(choices), metavar="|".join(choices),
                       help="; ".join(f"{name}: {what}" for name, what in choices.items())
                            + " (default: table on a terminal, ndjson otherwise)")


# What the man page of every command that reads NDJSON records says of its input (ndjson.Reader.records).
RECORDS_INPUT = (
    "Input is read a line at a time; a line longer than 1 MiB, a line that is not JSON, and JSON that is not an "
    "object are bad lines. A byte order mark at the start of a stream is skipped. Each bad line is reported as "
    "PROG: FILE:LINE: reason, the good lines still count, and the exit status is 65 (--strict stops at the first)."
)
# What the man page of every command that reads names or ids from standard input says of it (ndjson.Reader.values).
NAMES_INPUT = (
    "Input is read a line at a time; a line longer than 1 MiB is a bad line. A byte order mark at the start of "
    "a stream is skipped. A line that starts like JSON ({, [ or \") must parse: an object must hold the field "
    "(a non-empty string), a JSON string counts as its text, anything else is a bad line. A plain line is taken "
    "as it is (surrounding blanks removed) if it is a plausible name: no control characters, no JSON "
    "punctuation ({ } \"), no blanks inside a task id, and not a bare JSON number, true, false or null. "
    "Each bad line is reported as PROG: FILE:LINE: reason, the good lines "
    "still count, and the exit status is 65."
)


def add_input_options(parser, what="NDJSON records"):
    """Positional input files and ``--strict``, for commands that read NDJSON."""
    parser.add_argument("files", nargs="*", metavar="FILE",
                        help=f"files of {what} to read; - or none means standard input")
    parser.add_argument("--strict", action="store_true", help="stop at the first bad input line (exit 65)")
    parser.man_sections.append(("INPUT", RECORDS_INPUT))


def document_names_input(parser):
    """The INPUT man section of a command that reads names or ids with ``-``."""
    parser.man_sections.append(("INPUT", NAMES_INPUT))


def positive_float(text):
    """A finite number above 0 and at most MAX_NUMBER (nan, inf and 1e308 are typos, not durations)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    if value > MAX_NUMBER:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_NUMBER}: {text!r}")
    return value


_RATE = re.compile(r"^(\d+(?:\.\d+)?)(?:/([smh]))?$")
_RATE_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, None: 1}


def rate_per_second(text):
    """celery's rate syntax (``10/s``, ``5/m``, ``100/h``; a bare number is per second) as a float per second."""
    match = _RATE.match(text.strip())
    if not match:
        raise ValueError(f"not a rate: {text!r} (e.g. 10/s, 5/m, 100/h)")
    return float(match.group(1)) / _RATE_UNIT_SECONDS[match.group(2)]


def positive_rate(text):
    """An argparse type for a rate above 0 in celery's syntax (``10/m``), as a float per second."""
    try:
        rate = rate_per_second(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not 0 < rate <= MAX_NUMBER:  # 0/s, and 400 nines that make inf
        raise argparse.ArgumentTypeError(f"must be above 0 and at most {MAX_NUMBER}/s: {text!r}")
    return rate


def key_value(text):
    """``KEY=VALUE`` as ``(key, value)`` (a header, a stamp); ValueError when it is not one."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"not KEY=VALUE: {text!r}")
    return key, value


def whole_number(minimum, maximum=None):
    """An argparse type for whole numbers from ``minimum`` to ``maximum`` (default: no limit)."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}: {text!r}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum}: {text!r}")
        return value

    return parse


def name(what):
    """An argparse type for one name (a queue, a worker): never empty, blank or full of control characters.

    An empty name reaching a command usually means an unset shell variable
    (``cq-purge -Q "$QUEUE"``): it must stop the command, never widen it to "all".
    """

    def parse(text):
        problem = name_problem(text)
        if problem:
            raise argparse.ArgumentTypeError(f"{problem} {what}: {text!r}")
        return text

    return parse


def name_list(what):
    """An argparse type for ``A,B,C``: a list of names, none of them empty (``-Q ''`` and ``-Q a,,b`` are errors).

    Use with ``action="extend"`` so that repeated options add up.
    """
    check = name(what)

    def parse(text):
        return [check(item) for item in text.split(",")]

    return parse


def name_problem(text):
    """Why ``text`` cannot be a name ("empty", "blank", ...), or None when it can."""
    if text == "":
        return "empty"
    if not text.strip():
        return "blank"
    if text != text.strip():
        return "leading or trailing space in"
    if any(ord(char) < 32 or ord(char) == 127 for char in text):
        return "control character in"
    return None
