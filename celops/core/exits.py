"""The one exit-status table and the exceptions that map onto it (sysexits style)."""

import enum


class ExitStatus(enum.IntEnum):
    OK = 0
    FAILURE = 1  # the job's own negative result: no replies, threshold exceeded
    USAGE = 2
    DATA_ERROR = 65  # EX_DATAERR: bad input lines
    UNAVAILABLE = 69  # EX_UNAVAILABLE: broker unreachable
    INTERRUPTED = 130  # 128 + SIGINT


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


class BrokerUnavailable(CelopsError):
    """Raised with the broker URL, which is redacted before it is shown."""

    status = ExitStatus.UNAVAILABLE

    def __init__(self, url, reason):
        from celops.core.redact import redact_url

        super().__init__(f"cannot reach broker {redact_url(url)}: {reason}")
