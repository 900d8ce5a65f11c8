"""A pure function over lists, run on two cores: lists handed to a forked helper process are worked there
while this process works on others, and their results come back in order.

A move or removal on Redis spends its time decoding messages in Python
(parse, record, re-address, encode: ~20 us each), one core's work while
the other idles (Redis itself needs a tenth of it). The helper only
computes: it talks to no broker and writes nothing (it ends with
``os._exit``, so output buffered here is written once, by this process).
When it cannot start, or dies, this process does its part: nothing it does
can move, lose or repeat a message.
"""

import collections
import os
import pickle
import signal
import struct

HELPER_SHARE = 0.6  # of each chunk, the helper's part: this process also talks to the broker
MIN_ITEMS = 100  # fewer are worked here: the round trip to the helper would cost more than it saves
_SIZE = struct.Struct("<Q")


class TwoCores:
    """``work(items) -> [result per item]`` on two cores: ``submit(items)`` hands a list to the helper and
    returns a ticket; ``results(ticket, items)`` gives its results. A context manager (ends the helper).

    ``work`` must be pure (it runs in the helper on a copy of this process's
    memory as it was when the helper started) and its results picklable.
    Lists submitted and never asked for are dropped when a later one is.
    """

    def __init__(self, work):
        self.work = work
        self.pid = None
        self.to_helper = self.from_helper = None
        self.given_up = False
        self.submitted = 0
        self.pending = collections.deque()  # tickets whose results the helper has yet to hand back

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    @staticmethod
    def cut(size):
        """Where a chunk of ``size`` is split: the head is worked here, the tail submitted."""
        return size - int(size * HELPER_SHARE)

    def submit(self, items):
        """Start the helper on ``items`` (when they are enough and there is a helper): a ticket, or None."""
        if len(items) < MIN_ITEMS or not self._helper_running():
            return None
        try:
            _send(self.to_helper, items)
        except OSError:
            self.close()
            return None
        self.submitted += 1
        self.pending.append(self.submitted)
        return self.submitted

    def results(self, ticket, items):
        """The results for ``items``: the helper's (``ticket``: what ``submit`` returned for them), or, without
        a ticket or a helper, worked out here."""
        while ticket is not None and self.pending and self.pending[0] <= ticket:
            try:
                results = _receive(self.from_helper)
            except (OSError, ValueError, EOFError, pickle.UnpicklingError):
                self.close()
                break
            if self.pending.popleft() == ticket:
                return results
        return self.work(items)

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
        self.pending.clear()
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
    """The helper's loop: lists in, results out, until the parent closes its end.

    A thread takes the lists in as they come, so the parent's sends never
    wait on the helper's replies (which wait on the parent): no pipe size can
    deadlock them.
    """
    import queue
    import threading

    lists = queue.SimpleQueue()

    def take_in():
        try:
            while True:
                lists.put(_receive(requests))
        except (OSError, ValueError, EOFError, pickle.UnpicklingError):
            lists.put(None)

    threading.Thread(target=take_in, daemon=True).start()
    while (items := lists.get()) is not None:
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
    """A 1 MiB pipe (Linux) rather than 64 KiB: a chunk passes in a few writes, not dozens."""
    try:
        import fcntl

        fcntl.fcntl(end, fcntl.F_SETPIPE_SZ, 1 << 20)
    except (ImportError, AttributeError, OSError):
        pass
