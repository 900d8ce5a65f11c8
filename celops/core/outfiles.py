"""Output files: Prometheus textfiles written atomically, and plain words when a path can't be written.

One helper for every command that writes a node_exporter textfile (cev-cam's
prom sink, cq-len --textfile). prometheus_client's ``write_to_textfile``
does the same rename dance, but its errors name its temporary file and
surface as a bare exception rather than exit 73 naming the user's path.
"""

import os
import threading

from celops.core.exits import CantCreate


def write_textfile(path, registry):
    """The registry's metrics to ``path``: node_exporter reads the old file or the new one, never half of one."""
    from prometheus_client import generate_latest

    data = generate_latest(registry)
    temporary = _create_temporary(path)
    try:
        with open(temporary, "wb") as out:
            out.write(data)
        os.replace(temporary, path)
    except OSError as exc:
        _remove(temporary)
        raise cannot_create(path, exc) from None


def write_metrics(registry, textfile, stream):
    """The registry's metrics to ``textfile`` (atomically) when one is given, else to the binary ``stream``."""
    if textfile:
        write_textfile(textfile, registry)
        return
    from prometheus_client import generate_latest

    stream.write(generate_latest(registry))
    stream.flush()


def check_writable(path):
    """Raise ``CantCreate`` now, at start, if no file can be put beside ``path``, rather than at the first shot."""
    _remove(_create_temporary(path))


def cannot_create(path, exc):
    """``CantCreate`` for ``path`` (as the user gave it) with the reason in plain words."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        return CantCreate(path, f"no such directory {directory}")
    reason = getattr(exc, "strerror", None) or str(exc)
    return CantCreate(path, reason[:1].lower() + reason[1:])


def _create_temporary(path):
    """A hidden file beside ``path`` (same file system, so the rename is atomic; not *.prom, so never read)."""
    directory, name = os.path.split(path)
    temporary = os.path.join(directory, f".{name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666))
    except OSError as exc:
        raise cannot_create(path, exc) from None
    return temporary


def _remove(path):
    try:
        os.unlink(path)
    except OSError:
        pass
