"""The one exit-status table and the exceptions that map onto it (sysexits style)."""

import enum


class ExitStatus(enum.IntEnum):
    OK = 0
    FAILURE = 1  # the job's own negative result: no replies, threshold exceeded, declined
    USAGE = 2
    CRITICAL = 3  # ccheck: a crit finding (the smallest free status: ok < warn < crit stay in order)
    DATA_ERROR = 65  # EX_DATAERR: bad input lines, keys that are not what they should be
    UNAVAILABLE = 69  # EX_UNAVAILABLE: broker unreachable
    SOFTWARE = 70  # EX_SOFTWARE: an unexpected internal error (a bug: please report it)
    CANT_CREATE = 73  # EX_CANTCREAT: an output file cannot be created or written
    NO_PERMISSION = 77  # EX_NOPERM: the broker refuses this user the command
    CONFIG = 78  # EX_CONFIG: a missing dependency or an unusable configuration
    INTERRUPTED = 130  # 128 + SIGINT


# What each status means, in the words the man pages and README print.
EXIT_MEANINGS = {
    ExitStatus.OK: "ok",
    ExitStatus.FAILURE: "the job's own negative result (no replies, threshold exceeded, unknown queue, declined)",
    ExitStatus.USAGE: "usage error",
    ExitStatus.CRITICAL: "a critical finding (ccheck)",
    ExitStatus.DATA_ERROR: "bad input data",
    ExitStatus.UNAVAILABLE: "broker unavailable",
    ExitStatus.SOFTWARE: "internal error",
    ExitStatus.CANT_CREATE: "cannot create an output file",
    ExitStatus.NO_PERMISSION: "permission denied by the broker",
    ExitStatus.CONFIG: "missing dependency or unusable configuration",
    ExitStatus.INTERRUPTED: "interrupted (Ctrl-C)",
}


class CelopsError(Exception):
    """An error that ends the command with one stderr line and a known status."""

    status = ExitStatus.FAILURE

    def __init__(self, message, status=None):
        super().__init__(message)
        if status is not None:
            self.status = status


class UsageError(CelopsError):
    status = ExitStatus.USAGE


class DataError(CelopsError):
    status = ExitStatus.DATA_ERROR


class CantCreate(CelopsError):
    """An output path that cannot be written: named as the user gave it, never a temp file's name."""

    status = ExitStatus.CANT_CREATE

    def __init__(self, path, reason):
        super().__init__(f"cannot write {path}: {reason}")


class NoPermission(CelopsError):
    status = ExitStatus.NO_PERMISSION


class ConfigError(CelopsError):
    status = ExitStatus.CONFIG


class MissingDependency(ConfigError):
    """A module celops needs is not installed: say which and how to get it, never "broker down"."""

    def __init__(self, module):
        super().__init__(f"the Python module {module!r} is not installed; install celops with its dependencies "
                         f"(pip install celops, or `make install` in a checkout)")


class BrokerUnavailable(CelopsError):
    """Raised with the broker URL, which is redacted before it is shown."""

    status = ExitStatus.UNAVAILABLE

    def __init__(self, url, reason):
        from celops.core.redact import redact_url

        super().__init__(f"cannot reach broker {redact_url(url)}: {reason}")
        self.url = url
        self.reason = redact_url(reason)
