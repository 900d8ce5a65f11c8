"""Common options, declared once, and the entry wrapper every command runs through.

The wrapper owns the pipe contract's edges: exit statuses, the one error
format (``PROG: error: ...``), quiet ``BrokenPipeError`` and Ctrl-C, and no
traceback without ``--debug``.
"""

import argparse
import math
import os
import re
import sys

from celops import __version__
from celops.core.exits import EXIT_MEANINGS, CelopsError, ExitStatus, MissingDependency, UsageError

EXIT_STATUS_SECTION = "; ".join(f"{int(status)} {meaning}" for status, meaning in EXIT_MEANINGS.items()) + "."

# The largest number any option takes: past it a value is a typo or an overflow
# waiting to happen (1e308 seconds), not a wish.
MAX_NUMBER = 10_000_000

# Completion helpers, shared by the bash and zsh scripts of every command. Live
# names come from cq-ls and cctl ping on the broker the line names (-b, -A), else
# the default one; `timeout` and the commands' own -t keep a dead broker from
# hanging the shell. A comma-separated list (-d w1@h,<TAB>) completes its last name.
_COMPLETION_BASH = r"""
# bash splits words at : = @ too (COMP_WORDBREAKS): shtab's parser must see the words as typed
# (-b redis://h:6379/0, -d w1@h,w2@h), and the answers must replace only what readline replaces:
# the text after the last break character, or from an @ on (readline's host name completion).
_celops_rejoined() {
  local line="${COMP_LINE:0:COMP_POINT}" offset=0 start i
  local -a typed=()
  for ((i = 0; i <= COMP_CWORD; i++)); do
    start=$offset
    while [[ "${line:offset:1}" == [[:space:]] ]]; do ((offset++)); done
    if ((i > 0 && offset == start)); then typed[-1]+="${COMP_WORDS[i]}"; else typed+=("${COMP_WORDS[i]}"); fi
    ((offset += ${#COMP_WORDS[i]}))
  done
  local piece="${typed[-1]##*["$COMP_WORDBREAKS"]}"
  local before="${typed[-1]:0:${#typed[-1]}-${#piece}}"
  before="${before%@}"
  local -a COMP_WORDS=("${typed[@]}"); local COMP_CWORD=$((${#typed[@]} - 1))
  "_shtab_${1//-/_}" "$1" "${typed[-1]}" "${typed[-2]}"
  [ -z "$before" ] || COMPREPLY=("${COMPREPLY[@]#"$before"}")
}
_celops_line_broker() {
  local -a words; local i word
  read -ra words <<< "${COMP_LINE:0:COMP_POINT}"
  for ((i = 1; i < ${#words[@]}; i++)); do
    word="${words[i]}"
    case "$word" in
      -b|--broker|-A|--app) ((i + 1 < ${#words[@]})) || continue; printf '%s\n' "$word"; ((i++)); word="${words[i]}" ;;
      --broker=*|--app=*|-b?*|-A?*) ;;
      *) continue ;;
    esac
    word="${word#[\"\']}"; printf '%s\n' "${word%[\"\']}"
  done
}
_celops_live() {
  command -v "$1" >/dev/null 2>&1 || return 0
  local -a given; mapfile -t given < <(_celops_line_broker)
  timeout 3 "$1" "${given[@]}" "${@:2}" --format ndjson 2>/dev/null |
    sed -n "s/.*\"$_celops_field\":\"\([^\"]*\)\".*/\1/p"
}
_celops_offer() {
  local head="" word="$1" IFS=$'\n' candidate
  [[ "$word" == *,* ]] && head="${word%,*}," word="${word##*,}"
  for candidate in $(compgen -W "$2" -- "$word"); do printf '%s\n' "$head$candidate"; done
}
_celops_queues() { local _celops_field=queue; _celops_offer "$1" "$(_celops_live cq-ls -t 1)"; }
_celops_workers() { local _celops_field=hostname; _celops_offer "$1" "$(_celops_live cctl ping -t 1)"; }
_celops_event_types() { _celops_offer "$1" "EVENT_TYPES"; }
"""
_COMPLETION_ZSH = r"""
_celops_line_broker() {
  local i
  for (( i = 2; i < CURRENT; i++ )); do
    case $words[i] in
      -b|--broker|-A|--app) print -rl -- $words[i] ${(Q)words[i+1]}; (( i++ )) ;;
      --broker=*|--app=*|-b?*|-A?*) print -rl -- ${(Q)words[i]} ;;
    esac
  done
}
_celops_live() {
  (( $+commands[$1] )) || return 0
  local -a given; given=(${(f)"$(_celops_line_broker)"})
  timeout 3 "$1" "${given[@]}" "${@:2}" --format ndjson 2>/dev/null |
    sed -n "s/.*\"$_celops_field\":\"\([^\"]*\)\".*/\1/p"
}
_celops_offer() {
  local what=$1; shift
  (( $# )) || return 1
  _values -s , $what "${(@)${(@)${(@)@//\\/\\\\}//:/\\:}//\[/\\[}"
}
_celops_queues() { local _celops_field=queue; _celops_offer queue ${(f)"$(_celops_live cq-ls -t 1)"}; }
_celops_workers() { local _celops_field=hostname; _celops_offer worker ${(f)"$(_celops_live cctl ping -t 1)"}; }
_celops_event_types() { _celops_offer 'event type' EVENT_TYPES; }
"""
QUEUE_NAMES = {"bash": "_celops_queues", "zsh": "_celops_queues"}
WORKER_NAMES = {"bash": "_celops_workers", "zsh": "_celops_workers"}
EVENT_TYPE_NAMES = {"bash": "_celops_event_types", "zsh": "_celops_event_types"}


def completion_preamble():
    """The helpers above, by shell, with the event types of the vocabulary filled in (for shtab's preamble)."""
    from celops.records import EVENT_TYPES

    return {"bash": _COMPLETION_BASH.replace("EVENT_TYPES", "\n".join(EVENT_TYPES)),
            "zsh": _COMPLETION_ZSH.replace("EVENT_TYPES", " ".join(EVENT_TYPES))}


def complete_with(action, completer):
    """Attach a completer (QUEUE_NAMES, WORKER_NAMES, EVENT_TYPE_NAMES) to an argparse action."""
    action.complete = completer
    return action


class _ParserExit(Exception):
    def __init__(self, status):
        self.status = status


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
        raise _ParserExit(status)

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


class IO:
    """The streams a command uses: binary stdin/stdout, text stderr. Tests inject their own."""

    def __init__(self, stdin=None, stdout=None, stderr=None):
        self.stdin = stdin if stdin is not None else sys.stdin.buffer
        self.stdout = stdout if stdout is not None else sys.stdout.buffer
        self.stderr = stderr if stderr is not None else sys.stderr

    def stdout_is_tty(self):
        return _isatty(self.stdout)

    def stdin_is_tty(self):
        return _isatty(self.stdin)

    def stderr_is_tty(self):
        return _isatty(self.stderr)


def _isatty(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Context:
    """What ``run`` gets: the parsed args, the streams, and shared helpers."""

    def __init__(self, prog, args, io):
        self.prog = prog
        self.args = args
        self.io = io
        self._out = None
        self._broker = None

    @property
    def out(self):
        """The record writer on stdout: NDJSON (flushed per line on a TTY or with -u), or a table or TSV."""
        if self._out is None:
            terminal = self.io.stdout_is_tty()
            output_format = getattr(self.args, "format", None) or ("table" if terminal else "ndjson")
            unbuffered = getattr(self.args, "unbuffered", False)  # a command that writes no records has no -u
            if output_format in ("table", "tsv"):
                from celops.core.render import writer

                self._out = writer(self.io.stdout, output_format, terminal, unbuffered)
            else:
                from celops.core.ndjson import Writer

                self._out = Writer(self.io.stdout, flush_each=unbuffered or terminal)
        return self._out

    def flush(self):
        """Flush what was written so far (a table draws its batch), if anything was."""
        if self._out is not None:
            self._out.flush()

    @property
    def broker(self):
        """The resolved broker (see ``celops.core.broker.resolve``)."""
        if self._broker is None:
            from celops.core.broker import resolve

            self._broker = resolve(self.args, os.environ)
            if getattr(self.args, "debug", False):
                self._broker.trace = lambda message: self.warn(f"debug: {message}")
        return self._broker

    def reader(self):
        from celops.core.ndjson import Reader

        return Reader(self.args.files, self.io.stdin, self.warn, strict=self.args.strict)

    def warn(self, message):
        """A diagnostic line on stderr: ``PROG: message``."""
        self.io.stderr.write(f"{self.prog}: {message}\n")
        self.io.stderr.flush()

    def error(self, message):
        self.warn(f"error: {message}")


def execute(build_parser, run, argv=None, io=None):
    """Parse ``argv``, call ``run(ctx)``, and map every ending onto one exit status."""
    io = io or IO()
    parser = build_parser()
    parser.io = io
    argv = sys.argv[1:] if argv is None else list(argv)
    ctx = Context(parser.prog, None, io)
    try:
        ctx.args = parser.parse_args(argv)
        from celops.core.proctitle import hide_passwords

        hide_passwords(argv)
        status = run(ctx)
        ctx.flush()
        return int(status if status is not None else ExitStatus.OK)
    except _ParserExit as exc:
        return exc.status
    except BrokenPipeError:
        _quiet_closed_stdout(io)
        return ExitStatus.OK
    except KeyboardInterrupt:
        _write_records_so_far(ctx)
        return ExitStatus.INTERRUPTED
    except CelopsError as exc:
        _write_records_so_far(ctx)
        ctx.error(str(exc))
        if _debugging(ctx, argv):
            _print_traceback(io)
        return exc.status
    except ModuleNotFoundError as exc:
        _write_records_so_far(ctx)
        ctx.error(str(MissingDependency(exc.name)))
        return MissingDependency.status
    except Exception as exc:  # the last line of defence: one line, no traceback
        _write_records_so_far(ctx)
        if _debugging(ctx, argv):
            _print_traceback(io)
        else:
            from celops.core.redact import redact_url

            ctx.error(redact_url(f"internal error: {type(exc).__name__}: {exc} (--debug shows where)"))
        return ExitStatus.SOFTWARE


def _write_records_so_far(ctx):
    """Write the records a failed or interrupted command still buffers: what it printed before it stopped
    stands (a closed pipe or a second Ctrl-C meanwhile loses them quietly)."""
    try:
        ctx.flush()
    except BrokenPipeError:
        _quiet_closed_stdout(ctx.io)
    except (OSError, ValueError, KeyboardInterrupt):
        pass


def _debugging(ctx, argv):
    """--debug as argparse understood it (prefixes like --debu included), or as typed if parsing failed."""
    if ctx.args is not None:
        return bool(getattr(ctx.args, "debug", False))
    return "--debug" in argv


def _print_traceback(io):
    import traceback

    traceback.print_exc(file=io.stderr)


def _quiet_closed_stdout(io):
    """Point fd 1 at /dev/null so the interpreter's final flush cannot complain.

    This is the recipe from the Python docs (signal module, "Note on SIGPIPE").
    """
    try:
        fd = io.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)
