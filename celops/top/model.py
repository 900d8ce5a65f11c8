"""What cev-top knows: the shared State, plus what a screen needs and State leaves out.

State (celops.core.state) keeps a lean task table; the details view also
wants args, kwargs, result, traceback and each task's timeline, so those
are kept here beside it, bounded by the same --max-tasks. Ingest and
drawing meet only under ``lock``: the feed thread applies records, the
screen thread takes ``view`` copies and draws them without the lock.
"""

import threading
import time
from collections import deque

from celops.core.state import State

TICKER_SIZE = 100  # failures, retries and gaps remembered for the ticker
TIMELINE_SIZE = 20  # events remembered per task for its details
QUEUE_HISTORY = 16  # queue lengths remembered per queue, for the sparkline
RATE_WINDOW = 5.0  # seconds over which per-second rates are measured

# Fields of task events that State does not keep and the details view shows.
DETAIL_FIELDS = ("args", "kwargs", "result", "exception", "traceback", "eta", "expires", "root_id", "parent_id",
                 "routing_key", "exchange", "queue", "retries")
COUNTED = ("task-succeeded", "task-failed", "task-retried")
TICKER_TYPES = ("task-failed", "task-retried")

STATE_NAMES = ("PENDING", "RECEIVED", "STARTED", "SUCCESS", "FAILURE", "RETRY", "REVOKED", "REJECTED")
SORT_KEYS = ("age", "state", "name", "worker", "runtime")


class Details:
    """The fields of a task's events that State leaves out, and its timeline: (event type, timestamp, hostname)."""

    __slots__ = ("fields", "timeline")

    def __init__(self):
        self.fields = {}
        self.timeline = deque(maxlen=TIMELINE_SIZE)


class TopModel:
    """State plus details, ticker, totals, queue lengths, and the stream clock, behind one lock."""

    def __init__(self, max_tasks=10000, max_workers=5000):
        self.lock = threading.Lock()
        self.state = State(max_tasks=max_tasks, max_workers=max_workers)
        self.details = {}
        self._detail_order = deque()
        self.ticker = deque(maxlen=TICKER_SIZE)
        self.totals = dict.fromkeys(COUNTED, 0)
        self.records = 0
        self.read_at = None  # wall time when the stream clock last moved
        self.queues = {}  # name -> (record, deque of lengths)
        self.queue_problem = None
        self._rates = deque()  # (monotonic, events, succeeded, failed, retried)
        self.pace = None  # the Pacer of a replay
        self._ordered, self._ordered_for = [], None

    # Ingest (the feed thread) ---------------------------------------------------

    def ingest(self, records):
        """Apply a batch of records; returns the reasons of those rejected (bad events, never stored)."""
        problems = []
        with self.lock:
            state = self.state
            for record in records:
                before = state.stream_time
                problem = state.event(record)
                if problem is not None:
                    problems.append(problem)
                    continue
                self.records += 1
                if state.stream_time != before:
                    self.read_at = time.time()
                kind = record.get("type")
                if kind.__class__ is str and kind.startswith("task-"):
                    if kind in self.totals:
                        self.totals[kind] += 1
                    self._remember(kind, record)
                elif kind == "celops-gap":  # events were lost here: the ticker says when and why
                    self.ticker.append((record.get("since"), kind, None, "", record.get("reason")))
        return problems

    def _remember(self, kind, record):
        uuid = record["uuid"]
        details = self.details.get(uuid)
        if details is None:
            details = self.details[uuid] = Details()
            order = self._detail_order
            order.append(uuid)
            if len(order) > self.state.max_tasks:
                self.details.pop(order.popleft(), None)
        details.timeline.append((kind, record.get("timestamp"), record.get("hostname")))
        fields = details.fields
        for field in DETAIL_FIELDS:
            value = record.get(field)
            if value is not None:
                fields[field] = value
        if kind in TICKER_TYPES:
            task = self.state.tasks.get(uuid)
            self.ticker.append((record.get("timestamp"), kind, task.name if task else record.get("name"), uuid,
                                record.get("exception")))

    def set_queues(self, records, note=None):
        """A fresh batch of queue records (cq-len's); each queue's length history grows by one.

        ``note`` is what the measurement warned of (no management API: no unacked), shown with the pane.
        """
        with self.lock:
            seen = set()
            for record in records:
                if record.get("type") != "queue":
                    continue
                name = record["queue"]
                seen.add(name)
                history = self.queues.get(name, (None, deque(maxlen=QUEUE_HISTORY)))[1]
                history.append(record.get("messages"))
                self.queues[name] = (record, history)
            for gone in set(self.queues) - seen:
                del self.queues[gone]
            self.queue_problem = note

    def queue_failed(self, reason):
        with self.lock:
            self.queue_problem = reason

    # Reading (the screen thread) ------------------------------------------------

    def now(self):
        """The stream's clock, as cev-cam keeps it: the last local_received plus the time since it was read.

        A replay (``pace``: a feeds.Pacer) moves it at the replay's speed; paused or at its end it stands
        still, so that what was alive at that moment of the recording stays so while someone looks.
        """
        stream_time = self.state.stream_time
        if not stream_time or self.read_at is None:
            return time.time()
        pace = self.pace
        if pace is None:
            return stream_time + (time.time() - self.read_at)
        if pace.paused or pace.ended:
            return stream_time
        return stream_time + (time.time() - self.read_at) * pace.speed

    def rates(self, monotonic=None):
        """Per-second rates of events, succeeded, failed and retried over the last RATE_WINDOW seconds."""
        monotonic = time.monotonic() if monotonic is None else monotonic
        totals = self.totals
        sample = (monotonic, self.state.event_count, *(totals[kind] for kind in COUNTED))
        samples = self._rates
        samples.append(sample)
        while len(samples) > 2 and monotonic - samples[1][0] >= RATE_WINDOW:
            samples.popleft()
        first = samples[0]
        span = monotonic - first[0]
        if span <= 0:
            return (0.0, 0.0, 0.0, 0.0)
        return tuple((now - then) / span for now, then in zip(sample[1:], first[1:]))

    def view(self, task_filter=None, sort_key="age", limit=None):
        """A copy of what the screen shows, taken under the lock: plain rows, safe to draw without it."""
        with self.lock:
            now = self.now()
            state = self.state
            workers = [WorkerRow(worker, now) for worker in state.workers.values()]
            ordered = self._ordered_tasks(task_filter, sort_key, now)
            tasks = [TaskRow(task, now) for task in (ordered if limit is None else ordered[:limit])]
            queues = [QueueRow(record, list(history)) for record, history in self.queues.values()]
            header = Header(now=now, events=state.event_count, totals=dict(self.totals), gaps=state.gaps,
                            errors=state.errors, invalid=state.invalid, task_count=len(state.tasks),
                            queue_problem=self.queue_problem, rates=self.rates(), matching=len(ordered))
            ticker = list(self.ticker)
        workers.sort(key=lambda row: row.hostname)
        queues.sort(key=lambda row: row.name)
        return View(header, workers, queues, tasks, ticker)

    def _ordered_tasks(self, task_filter, sort_key, now):
        """The tasks that pass the filter, in order; kept until a record comes or the order asked changes,
        so an idle screen does not sort the whole table every second."""
        asked = (self.records, task_filter and task_filter.text, sort_key)
        if asked != self._ordered_for:
            tasks = [task for task in self.state.tasks.values() if task_filter is None or task_filter.matches(task)]
            tasks.sort(key=task_order(sort_key, now))
            self._ordered, self._ordered_for = tasks, asked
        return self._ordered

    def task_details(self, uuid):
        """``(task record, details fields, timeline)`` of one task, or None when it is gone."""
        with self.lock:
            task = self.state.tasks.get(uuid)
            if task is None:
                return None
            details = self.details.get(uuid) or Details()
            return task.as_record(), dict(details.fields), list(details.timeline)

    def task_record(self, uuid):
        """The ``task`` record (records.py) of one task, as cev-cam --tasks writes it; None when gone."""
        with self.lock:
            task = self.state.tasks.get(uuid)
            return None if task is None else task.as_record()


class Header:
    def __init__(self, **fields):
        self.__dict__.update(fields)


class View:
    def __init__(self, header, workers, queues, tasks, ticker):
        self.header, self.workers, self.queues, self.tasks, self.ticker = header, workers, queues, tasks, ticker


class WorkerRow:
    __slots__ = ("hostname", "alive", "active", "processed", "loadavg", "beat_age", "version")

    def __init__(self, worker, now):
        self.hostname = worker.hostname
        self.alive = worker.alive(now)
        self.active = worker.active
        self.processed = worker.processed
        self.loadavg = worker.loadavg
        self.beat_age = None if worker.last_heartbeat is None else max(0.0, now - worker.last_heartbeat)
        self.version = worker.sw_ver


class TaskRow:
    __slots__ = ("uuid", "state", "name", "hostname", "runtime", "age", "exception")

    def __init__(self, task, now):
        self.uuid = task.uuid
        self.state = task.state
        self.name = task.name
        self.hostname = task.hostname
        self.runtime = task.runtime
        if self.runtime is None and task.state == "STARTED" and task.started is not None:
            self.runtime = max(0.0, now - task.started)  # running: for how long so far
        self.age = None if task.timestamp is None else max(0.0, now - task.timestamp)
        self.exception = task.exception


class QueueRow:
    __slots__ = ("name", "messages", "unacked", "consumers", "history")

    def __init__(self, record, history):
        self.name = record["queue"]
        self.messages = record.get("messages")
        self.unacked = record.get("unacked")
        self.consumers = record.get("consumers")
        self.history = history

    @property
    def trend(self):
        """+1 growing, -1 shrinking, 0 steady or unknown, between the last two lengths."""
        known = [length for length in self.history[-2:] if length is not None]
        if len(known) < 2 or known[0] == known[1]:
            return 0
        return 1 if known[1] > known[0] else -1


def task_order(sort_key, now):
    """The sort key function of SORT_KEYS' ``sort_key``: newest first within equal values, running tasks
    by how long they have run so far."""

    def newest_first(task):
        return float("inf") if task.timestamp is None else -task.timestamp

    def runtime(task):
        if task.runtime is not None:
            return -task.runtime
        return task.started - now if task.state == "STARTED" and task.started is not None else 0.0

    return {
        "age": newest_first,
        "state": lambda task: (task.state, newest_first(task)),
        "name": lambda task: (task.name or "", newest_first(task)),
        "worker": lambda task: (task.hostname or "", newest_first(task)),
        "runtime": runtime,
    }[sort_key]


class TaskFilter:
    """What ``/`` typed: words that are state names (FAILURE, started) pick states; the rest must all be in
    the task's name (case-insensitive)."""

    def __init__(self, text):
        self.text = text.strip()
        words = self.text.split()
        self.states = {word.upper() for word in words if word.upper() in STATE_NAMES}
        self.name_parts = [word.lower() for word in words if word.upper() not in STATE_NAMES]

    def matches(self, task):
        if self.states and task.state not in self.states:
            return False
        name = (task.name or "").lower()
        return all(part in name for part in self.name_parts)
