"""A pure function over lists, run on two cores: the tail of each list in a forked helper process, the head
here at the same time, the results in order.

A move or removal on Redis spends its time decoding messages in Python
(parse, record, re-address, encode: ~20 us each), one core's work while
the other idles (Redis itself needs a tenth of it). The helper only
computes: it talks to no broker and writes nothing (it ends with
``os._exit``, so output buffered here is written once, by this process).
When it cannot start, or dies, this process does its part: nothing it does
can move, lose or repeat a message.
"""

import os
import pickle
import signal
import struct

HELPER_SHARE = 0.6  # of each list, the helper's part: this process also talks to the broker meanwhile
MIN_ITEMS = 200  # a shorter list is done here: the round trip to the helper would cost more than it saves
_SIZE = struct.Struct("<Q")


class TwoCores:
    """``work(items) -> [result per item]``, on two cores: ``split(items)`` starts the helper on the tail of
    ``items`` and leaves the head to this process, which calls ``work`` on it meanwhile. A context manager
    (ends the helper).

    ``work`` must be pure (it runs in the helper on a copy of this process's
    memory as it was when the helper started) and its results picklable.
    """

    def __init__(self, work):
        self.work = work
        self.pid = None
        self.to_helper = self.from_helper = None
        self.given_up = False
        self.pending = None  # the tail the helper is working on, until its results are read

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def split(self, items):
        """``(head, tail, tail_results)``: the helper starts on ``tail`` (empty when ``items`` are few or there
        is no helper); ``tail_results()`` returns its results, or computes them here if the helper died."""
        self._discard_pending()
        if len(items) < MIN_ITEMS or not self._helper_running():
            return items, [], list
        cut = len(items) - int(len(items) * HELPER_SHARE)
        tail = items[cut:]
        try:
            _send(self.to_helper, tail)
        except OSError:
            self.close()
            return items, [], list
        self.pending = tail
        return items[:cut], tail, self._tail_results

    def _tail_results(self):
        tail, self.pending = self.pending, None
        try:
            return _receive(self.from_helper)
        except (OSError, ValueError, EOFError, pickle.UnpicklingError):
            self.close()
            return self.work(tail)

    def _discard_pending(self):
        if self.pending is not None:
            self._tail_results()

    def _helper_running(self):
        if self.pid is None and not self.given_up:
            self.given_up = True  # one helper per context: if it fails, this process does the rest
            self._start()
        return self.pid is not None

    def _start(self):
        down_read, down_write = os.pipe()
        up_read, up_write = os.pipe()
        for end in (down_write, up_write):
            _widen(end)
        try:
            pid = os.fork()
        except OSError:
            for end in (down_read, down_write, up_read, up_write):
                os.close(end)
            return
        if pid == 0:  # the helper
            status = 1
            try:
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's; its exit ends this one
                os.close(down_write)
                os.close(up_read)
                _serve(self.work, os.fdopen(down_read, "rb", buffering=0), os.fdopen(up_write, "wb", buffering=0))
                status = 0
            finally:
                os._exit(status)
        os.close(down_read)
        os.close(up_write)
        self.pid = pid
        self.to_helper = os.fdopen(down_write, "wb", buffering=0)
        self.from_helper = os.fdopen(up_read, "rb", buffering=0)

    def close(self):
        """End the helper (at once: it holds nothing worth waiting for)."""
        if self.pid is None:
            return
        for stream in (self.to_helper, self.from_helper):
            stream.close()
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(self.pid, 0)
        self.pid = None


def _serve(work, requests, replies):
    """The helper's loop: lists in, results out, until the parent closes its end."""
    while True:
        try:
            items = _receive(requests)
        except EOFError:
            return
        _send(replies, work(items))


def _send(stream, value):
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    for part in (_SIZE.pack(len(data)), data):
        view = memoryview(part)
        while view:
            view = view[stream.write(view):]


def _receive(stream):
    (size,) = _SIZE.unpack(_read_exactly(stream, _SIZE.size))
    return pickle.loads(_read_exactly(stream, size))


def _read_exactly(stream, size):
    data = bytearray(size)
    view = memoryview(data)
    while view:
        count = stream.readinto(view)
        if not count:
            raise EOFError("the other process closed its end")
        view = view[count:]
    return data


def _widen(end):
    """A 1 MiB pipe (Linux) rather than 64 KiB: a chunk's results pass in a few writes, not dozens."""
    try:
        import fcntl

        fcntl.fcntl(end, fcntl.F_SETPIPE_SZ, 1 << 20)
    except (ImportError, AttributeError, OSError):
        pass
