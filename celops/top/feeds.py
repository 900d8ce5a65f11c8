"""The one place cev-top touches the core: events (cev-cam's source), queue lengths (cq-len's path) and
broadcasts (cctl's mailbox). Re-pointing cev-top at a reshaped core means editing this module only.

Each feed is a daemon thread that only reads and hands records to the model;
none of them ever waits for the screen.
"""

import threading
import time

from celops.core.exits import BrokerUnavailable, CelopsError

BATCH = 2000  # records applied per hold of the model's lock: the screen never waits long for it
ACTION_TIMEOUT = 2.0  # seconds a broadcast waits for replies
QUEUE_INTERVAL = 5.0
SOURCE_CLOSE_WAIT = 3.0  # seconds; EventSource.close waits up to 2 s for its own threads


def open_events(broker, args):
    """cev-cam's event source for ``broker`` (add_source_options' --enable-events and the rest), connected now,
    so that an unreachable broker is exit 69 before the screen is taken."""
    from celops.core.events import EventSource

    source = EventSource.from_args(broker, args)
    source.connect()
    return source


def add_source_options(parser):
    """cev-dump's and cev-cam's event source options (--enable-events, --buffer, --queue...), declared there."""
    from celops.core.events import add_source_options as add

    return add(parser)


class Feed:
    """A daemon thread feeding the model until ``stop``; ``ended`` says its input ran out, ``failure`` is the
    exception that stopped it early (a bug, a broker refusing us), raised again once the screen is closed."""

    def __init__(self, model):
        self.model = model
        self.stopping = threading.Event()
        self.ended = False
        self.failure = None
        self.thread = threading.Thread(target=self._guarded, name=f"cev-top-{type(self).__name__}", daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.stopping.set()

    def _guarded(self):
        try:
            self.run()
        except Exception as exc:  # shown in the status line now and by the command's wrapper on exit
            self.failure = exc
        finally:
            self.ended = True

    def problem(self):
        """The failure in the status line's words."""
        if isinstance(self.failure, CelopsError):
            return f"error: {self.failure}"
        return f"internal error: {type(self.failure).__name__}: {self.failure}"


class BrokerEvents(Feed):
    """Events from the broker: EventSource's own reader thread keeps reading while this one applies them."""

    def __init__(self, model, source):
        super().__init__(model)
        self.source = source

    def stop(self):
        """Stop, and wait for the source to close: with --queue, what was taken is acknowledged then."""
        super().stop()
        self.thread.join(SOURCE_CLOSE_WAIT)

    def run(self):
        """Bad events from the broker are counted by State (the header's "invalid"), not reported one by one."""
        ingest, get_batch = self.model.ingest, self.source.get_batch
        with self.source:
            while not self.stopping.is_set():
                batch = get_batch(0.25)
                for start in range(0, len(batch), BATCH):
                    ingest(batch[start:start + BATCH])


class RecordEvents(Feed):
    """Event records read from files or a pipe (cev-dump's output), at once or paced by a ``Pacer`` (--replay).

    A bad line, or an event State refuses, is reported as FILE:LINE: reason
    through the reader (``bad_lines`` counts them), as cev-cam reports them.
    """

    def __init__(self, model, reader, pacer=None):
        super().__init__(model)
        self.reader = reader
        self.pacer = pacer

    def run(self):
        ingest, pacer = self.model.ingest, self.pacer
        for source, number, record in self.reader.numbered_records():
            if pacer is not None and not pacer.wait_turn(record, self.stopping):
                return
            for problem in ingest((record,)):
                self.reader.bad(source, number, problem)
            if self.stopping.is_set():
                return
        if pacer is not None:
            pacer.ended = True


class Pacer:
    """--replay's clock: each record is due at its recorded time (local_received, else timestamp) divided by
    the speed, counted from the first; ``paused`` holds records back, ``step`` lets one through."""

    def __init__(self, speed):
        self.speed = speed
        self.paused = False
        self.ended = False  # the recording is over: its clock stops there
        self._steps = 0
        self._wake = threading.Condition()
        self._origin = None  # (recorded time, monotonic time) the schedule counts from
        self._last = None

    def wait_turn(self, record, stopping):
        """Block until ``record`` is due; False when ``stopping`` was set meanwhile."""
        recorded = _recorded_time(record)
        with self._wake:
            while not stopping.is_set():
                if self.paused:
                    if self._steps:
                        self._steps -= 1
                        self._rebase(recorded)
                        break
                    self._wake.wait(0.25)
                    continue
                if recorded is None:
                    break
                if self._origin is None:
                    self._rebase(recorded)
                due = self._origin[1] + (recorded - self._origin[0]) / self.speed
                wait = due - time.monotonic()
                if wait <= 0:
                    break
                self._wake.wait(min(wait, 0.25))
            else:
                return False
            if recorded is not None:
                self._last = recorded
            return True

    def _rebase(self, recorded):
        self._origin = None if recorded is None else (recorded, time.monotonic())

    def toggle_pause(self):
        with self._wake:
            self.paused = not self.paused
            if not self.paused and self._last is not None:
                self._rebase(self._last)  # go on from where it stood, not catch up on the paused time
            self._wake.notify_all()
        return self.paused

    def step(self):
        with self._wake:
            self._steps += 1
            self._wake.notify_all()

    def change_speed(self, factor):
        with self._wake:
            self.speed = min(max(self.speed * factor, 0.01), 1e6)
            if self._last is not None:
                self._rebase(self._last)
            self._wake.notify_all()
        return self.speed


def _recorded_time(record):
    for field in ("local_received", "timestamp"):
        value = record.get(field)
        if value.__class__ in (int, float):
            return value
    return None


class QueueLengths(Feed):
    """cq-len's measurement (the transport's ``measurer``) every ``interval`` seconds, one round trip each, reconnecting after an outage."""

    def __init__(self, model, broker, timeout, management_url, interval=QUEUE_INTERVAL):
        super().__init__(model)
        self.broker = broker
        self.notes = []  # what the last measurement warned of
        self.timeout = timeout
        self.management_url = management_url
        self.interval = interval

    def run(self):
        measure = None
        while True:
            try:
                del self.notes[:]
                measure = measure or self.broker.transport.measurer(None, self.timeout, self.management_url,
                                                                    self.notes.append)
                records = [item for item in measure() if isinstance(item, dict)]
                self.model.set_queues(records, self.notes[-1] if self.notes else None)
            except BrokerUnavailable as exc:
                measure = None
                self.model.queue_failed(str(exc))
            except CelopsError as exc:
                self.model.queue_failed(str(exc))
            if self.stopping.wait(self.interval):
                return


class Control:
    """Broadcasts through cctl's mailbox, each in a thread of its own; ``report(text)`` hears how it went."""

    def __init__(self, broker, report, timeout=ACTION_TIMEOUT):
        self.broker = broker
        self.report = report
        self.timeout = timeout

    def send(self, what, command, arguments, destination=None, silent=False):
        """Send ``command`` now; the replies (or the failure) are reported as ``what: ...``."""
        self.report(f"{what}: sent, waiting for replies")
        threading.Thread(target=self._send, args=(what, command, arguments, destination, silent),
                         name="cev-top-control", daemon=True).start()

    def _send(self, what, command, arguments, destination, silent):
        from celops.core.broadcast import open_mailbox
        from celops.core.redact import redact

        try:
            deadline = time.monotonic() + self.timeout
            with open_mailbox(self.broker, self.timeout) as mailbox:
                mailbox.request(command, arguments, destination, expires_in=self.timeout)
                if silent:
                    self.report(f"{what}: sent")
                    return
                replies = {hostname: redact(reply) for _, hostname, reply in mailbox.replies(deadline)}
        except CelopsError as exc:
            self.report(f"{what}: failed: {exc}")
            return
        except Exception as exc:  # the broker went away mid-way: say so, keep the screen
            self.report(f"{what}: failed: {type(exc).__name__}: {exc}")
            return
        if not replies:
            self.report(f"{what}: no reply within {self.timeout:g}s")
            return
        self.report(f"{what}: " + "; ".join(f"{host}: {reply_text(reply)}" for host, reply in sorted(replies.items())))


def reply_text(reply):
    """A worker's control reply in a few words: {"ok": "..."} and {"error": "..."} as they say it."""
    if isinstance(reply, dict):
        if "ok" in reply:
            return str(reply["ok"])
        if "error" in reply:
            return f"error: {reply['error']}"
    from celops.core.render import text

    return text(reply)
