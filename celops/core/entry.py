"""The entry wrapper every command runs through: its streams, its context, and ``execute``.

The wrapper owns the pipe contract's edges: exit statuses, the one error
format (``PROG: error: ...``), quiet ``BrokenPipeError`` and Ctrl-C, and no
traceback without ``--debug``.
"""

import os
import sys

from celops.core.exits import CelopsError, ExitStatus, MissingDependency


class ParserExit(Exception):
    """What the command parser raises instead of exiting (--help, --version): the status to return."""

    def __init__(self, status):
        self.status = status


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
    except ParserExit as exc:
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
