"""Running in the background: --detach (a double fork), --pidfile and --logfile, for long-lived commands."""

import atexit
import os

from celops.core.exits import UsageError
from celops.core.outfiles import cannot_create


def add_daemon_options(parser):
    daemon = parser.add_argument_group("daemon")
    daemon.add_argument("--detach", action="store_true", help="run in the background")
    daemon.add_argument("--pidfile", metavar="PATH", help="write the process id here; refuse if it is running")
    daemon.add_argument("--logfile", metavar="PATH", help="where diagnostics go when detached")


def write_pidfile(path):
    """Write our pid; refuse when the file names a process that is still running."""
    refuse_running(path)
    try:
        with open(path, "w") as handle:
            handle.write(f"{os.getpid()}\n")
    except OSError as exc:
        raise cannot_create(path, exc) from None
    atexit.register(_remove_pidfile, path, os.getpid())


def refuse_running(path):
    """UsageError when the pidfile ``path`` names a process that is still running."""
    if not path:
        return
    try:
        with open(path) as existing:
            pid = int(existing.read().strip() or 0)
        if pid:
            os.kill(pid, 0)
            raise UsageError(f"--pidfile {path}: process {pid} is running")
    except (FileNotFoundError, ValueError, ProcessLookupError):
        pass
    except PermissionError:
        raise UsageError(f"--pidfile {path}: a process of another user holds it") from None


def _remove_pidfile(path, pid):
    try:
        with open(path) as handle:
            if int(handle.read().strip() or 0) == pid:
                os.unlink(path)
    except (OSError, ValueError):
        pass


def detach(pidfile, logfile):
    """Double fork into the background; stdout and stderr go to --logfile (or /dev/null).

    The log file is opened before the fork, so that a path that can't be
    written is exit 73 for the user rather than a daemon that says nothing.
    """
    null = os.open(os.devnull, os.O_RDWR)
    try:
        log = os.open(logfile, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644) if logfile else null
    except OSError as exc:
        raise cannot_create(logfile, exc) from None
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    if pidfile:
        write_pidfile(pidfile)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
