"""A lean cluster State built from event records: celery's rules, smaller structures.

It follows ``celery.events.state.State`` where it matters to a monitor:

- a task's state moves by celery's precedence (``celery.states.precedence``):
  an event that logically happened before the task's current state (a
  ``task-started`` arriving after ``task-succeeded``) fills in fields but
  does not move the state back; RETRY always moves; a late ``task-received``
  contributes only name, args/kwargs-like fields and retries;
- a worker is alive while ``now < last_heartbeat + freq * 2`` (celery's
  ``heartbeat_expires`` with ``HEARTBEAT_EXPIRE_WINDOW`` 200%); worker events
  beat with their ``local_received``, task events with their ``timestamp``,
  ``worker-offline`` stops the heart;
- the task and worker tables are bounded, oldest first out;
- every field it keeps is checked at the door (``event_problem``): an event
  with a field of the wrong type or out of range is rejected whole, counted
  as ``invalid`` and never stored, so a snapshot or a sink can never trip
  over it later, whoever published it.

It keeps less than celery's ``Task``: no args/kwargs/result, no parent/child
links and no time heap, which is what makes it several times faster and smaller.
"""

from bisect import bisect_left
from collections import deque

from celops import records

# celery.states.PRECEDENCE: lower index is later in a task's life. Unknown
# (custom) states rank with None, as in celery.
_PRECEDENCE = ["SUCCESS", "FAILURE", None, "REVOKED", "STARTED", "RECEIVED", "REJECTED", "RETRY", "PENDING"]
_RANK = {state: index for index, state in enumerate(_PRECEDENCE)}
_UNKNOWN_RANK = _RANK[None]

# task event subject -> state, as celery.events.state.TASK_EVENT_TO_STATE
TASK_STATES = {
    "sent": "PENDING", "received": "RECEIVED", "started": "STARTED", "failed": "FAILURE",
    "retried": "RETRY", "succeeded": "SUCCESS", "revoked": "REVOKED", "rejected": "REJECTED",
}
_SUBJECT_RANK = {subject: _RANK[state] for subject, state in TASK_STATES.items()}
_TASK_SUBJECTS = {f"task-{subject}": subject for subject in TASK_STATES}

HEARTBEAT_EXPIRE_WINDOW = 200  # percent of freq, as celery.events.state
DEFAULT_FREQ = 60.0  # celery's Worker.freq before a worker event says otherwise

# The ranges of the values State keeps. Past them a field is corrupt or hostile,
# not a fact: a freq of 1e308 would keep a dead worker alive forever.
MAX_EPOCH = 1e11  # epoch seconds, the year 5138
MAX_SECONDS = 1e9  # a runtime of 31 years
MAX_FREQ = 3600.0  # seconds between heartbeats (celery's default is 2)
MAX_WHOLE = (1 << 63) - 1  # SQLite's largest INTEGER
MAX_LOADAVG = 3

# prometheus_client's default histogram buckets, upper bounds in seconds
RUNTIME_BUCKETS = (.005, .01, .025, .05, .075, .1, .25, .5, .75, 1.0, 2.5, 5.0, 7.5, 10.0)


def _text(value):
    return value.__class__ is str


def _whole(value):
    return value.__class__ is int and 0 <= value <= MAX_WHOLE


def _number_within(low, high, low_included=True):
    def check(value):
        if value.__class__ is not float and value.__class__ is not int:
            return False  # bool is an int subclass, but not a number here
        return (low <= value if low_included else low < value) and value <= high  # nan fails both
    return check


def _loadavg(value):
    return value.__class__ is list and len(value) <= MAX_LOADAVG and all(map(_number_within(0, MAX_WHOLE), value))


_epoch = _number_within(0, MAX_EPOCH)

# field -> (check, what a good value is); the fields State reads, and only those
FIELD_CHECKS = {
    "local_received": (_epoch, f"epoch seconds from 0 to {MAX_EPOCH:g}"),
    "timestamp": (_epoch, f"epoch seconds from 0 to {MAX_EPOCH:g}"),
    "uuid": (_text, "a string"),
    "hostname": (_text, "a string"),
    "name": (_text, "a string"),
    "exception": (_text, "a string"),
    "runtime": (_number_within(0, MAX_SECONDS), f"seconds from 0 to {MAX_SECONDS:g}"),
    "freq": (_number_within(0, MAX_FREQ, low_included=False), f"seconds above 0 and at most {MAX_FREQ:g}"),
    "retries": (_whole, f"a whole number from 0 to {MAX_WHOLE}"),
    "clock": (_whole, f"a whole number from 0 to {MAX_WHOLE}"),
    "active": (_whole, f"a whole number from 0 to {MAX_WHOLE}"),
    "processed": (_whole, f"a whole number from 0 to {MAX_WHOLE}"),
    "pid": (_whole, f"a whole number from 0 to {MAX_WHOLE}"),
    "loadavg": (_loadavg, f"a list of at most {MAX_LOADAVG} numbers"),
    "sw_ident": (_text, "a string"),
    "sw_ver": (_text, "a string"),
    "sw_sys": (_text, "a string"),
}


def event_problem(record):
    """Why State must not take ``record`` (a plain-words reason), or None when it may.

    Records that are not events (no type, an unknown one) may pass: State counts
    them as ignored. Absent and null fields may pass: State skips them.
    """
    kind = record.get("type")
    if kind.__class__ is not str or not kind.startswith(("task-", "worker-")):
        value = record.get("local_received")  # the stream's clock, whatever the record
        if value is not None and not _epoch(value):
            return _wrong("local_received", value)
        return None
    required = "uuid" if kind.startswith("task-") else "hostname"
    if record.get(required) is None:
        return f"{kind} event without {required}"
    for field, value in record.items():
        rule = FIELD_CHECKS.get(field)
        if rule is not None and value is not None and not rule[0](value):
            return f"{kind} event: {_wrong(field, value)}"
    return None


def _wrong(field, value):
    shown = repr(value)
    if len(shown) > 40:
        shown = shown[:37] + "..."
    return f"{field} must be {FIELD_CHECKS[field][1]}, not {shown}"


class Task:
    """One task's merged fields. Timestamps are the events' own (worker clock)."""

    __slots__ = ("uuid", "name", "state", "rank", "hostname", "timestamp", "clock",
                 "sent", "received", "started", "succeeded", "failed", "retried", "revoked",
                 "rejected", "runtime", "retries", "exception", "changed")

    def __init__(self, uuid):
        self.uuid = uuid
        self.name = self.hostname = self.timestamp = self.runtime = self.retries = self.exception = None
        self.sent = self.received = self.started = self.succeeded = self.failed = None
        self.retried = self.revoked = self.rejected = None
        self.state = "PENDING"
        self.rank = _RANK["PENDING"]
        self.clock = 0
        self.changed = True

    def as_record(self):
        """The ``task`` record: project-wide names, epoch-float times, no empty fields."""
        record = {"type": "task"}
        for field in self.__slots__:
            if field in ("rank", "changed"):
                continue
            value = getattr(self, field)
            if value is not None:
                record[field] = value
        wait = self.wait
        if wait is not None:
            record["wait"] = wait
        return record

    @property
    def wait(self):
        """Seconds spent queued at the worker: received -> started."""
        if self.received is not None and self.started is not None:
            return self.started - self.received
        return None


class Worker:
    __slots__ = ("hostname", "freq", "last_heartbeat", "active", "processed", "loadavg",
                 "sw_ident", "sw_ver", "sw_sys", "pid", "clock")

    def __init__(self, hostname):
        self.hostname = hostname
        self.freq = DEFAULT_FREQ
        self.last_heartbeat = None
        self.active = self.processed = self.loadavg = self.sw_ident = self.sw_ver = self.sw_sys = None
        self.pid = None
        self.clock = 0

    def heartbeat_expires(self):
        return self.last_heartbeat + self.freq * (HEARTBEAT_EXPIRE_WINDOW / 100)

    def alive(self, now):
        return self.last_heartbeat is not None and now < self.heartbeat_expires()

    def as_record(self, now):
        return {"hostname": self.hostname, "alive": self.alive(now), "active": self.active,
                "processed": self.processed, "loadavg": self.loadavg, "freq": self.freq,
                "last_heartbeat": self.last_heartbeat, "sw_ver": self.sw_ver}


_WORKER_FIELDS = ("freq", "active", "processed", "loadavg", "sw_ident", "sw_ver", "sw_sys", "pid", "clock")


class State:
    """Workers, tasks and counters, fed one event record at a time by ``event``.

    ``stream_time`` is the latest ``local_received`` seen (0.0 before any):
    the clock against which worker liveness is judged when replaying a saved stream.
    """

    def __init__(self, max_tasks=10000, max_workers=5000):
        self.max_tasks = max_tasks
        self.max_workers = max_workers
        # Eviction order, oldest first, kept beside each table: deleting from
        # the front of a big dict (del d[next(iter(d))]) gets slower each time.
        self.tasks = {}
        self._arrivals = deque()  # uuids
        self.workers = {}
        self._worker_arrivals = deque()  # hostnames
        self.event_count = 0
        self.gaps = 0
        self.errors = 0
        self.ignored = 0
        self.invalid = 0
        self.stream_time = 0.0
        # (event subject, task name, hostname) -> count; what prom's *_total counters show
        self.task_events = {}
        # (task name, hostname) -> [bucket counts..., +Inf count, sum]; the runtime histogram
        self.runtimes = {}

    def event(self, record):
        """Apply one record; returns why it was rejected (a bad event, not stored), else None.

        Anything that is not an event is counted as ignored, never fatal.
        """
        problem = event_problem(record)
        if problem is not None:
            self.invalid += 1
            return problem
        kind = record.get("type")
        local_received = record.get("local_received")
        if local_received is not None and local_received > self.stream_time:
            self.stream_time = local_received
        if kind.__class__ is not str:
            self.ignored += 1
            return None
        subject = _TASK_SUBJECTS.get(kind)
        if subject is not None:
            self._task_event(subject, record, local_received)
        elif kind.startswith("task-"):
            self._task_event(kind[5:], record, local_received)
        elif kind.startswith("worker-"):
            self._worker_event(kind[7:], record, local_received)
        elif kind == records.GAP:
            self.gaps += 1
        elif kind == records.ERROR:
            self.errors += 1
        else:
            self.ignored += 1
        return None

    def _task_event(self, subject, record, local_received):
        uuid = record["uuid"]
        self.event_count += 1
        tasks = self.tasks
        task = tasks.get(uuid)
        if task is None:
            task = tasks[uuid] = Task(uuid)
            arrivals = self._arrivals
            arrivals.append(uuid)
            if len(arrivals) > self.max_tasks:
                tasks.pop(arrivals.popleft(), None)
        timestamp = record.get("timestamp")
        hostname = record.get("hostname")
        name = record.get("name")
        rank = _SUBJECT_RANK.get(subject)
        if rank is None:  # a custom state, ranked as celery ranks unknown ones
            state, rank = subject.upper(), _UNKNOWN_RANK
        else:
            state = TASK_STATES[subject]
            setattr(task, subject, timestamp)
        if subject == "sent":
            pass  # sent by the client: its hostname is not the worker's
        elif rank > task.rank and state != "RETRY" and task.state != "RETRY":
            # this event happened before the task's current state: merge, keep the state
            if task.hostname is None:
                task.hostname = hostname
            if subject == "received":
                name = name or task.name
                if "retries" in record:
                    task.retries = record["retries"]
        else:
            task.state, task.rank, task.timestamp, task.hostname = state, rank, timestamp, hostname
            task.clock = record.get("clock", 0)
            if subject == "succeeded":
                task.runtime = runtime = record.get("runtime")
                if runtime is not None:
                    self._observe(name or task.name, hostname, runtime)
            elif subject == "failed":
                task.exception = record.get("exception")
            elif subject == "received":
                task.retries = record.get("retries")
        if name is not None:
            task.name = name
        task.changed = True
        key = (subject, task.name, hostname)
        task_events = self.task_events
        task_events[key] = task_events.get(key, 0) + 1
        if hostname is not None and timestamp is not None and subject != "sent":
            worker = self.workers.get(hostname) or self._worker(hostname)
            if local_received is not None and timestamp > local_received:
                timestamp = local_received  # a worker clock ahead of ours must not keep it alive longer
            beat = worker.last_heartbeat
            if beat is None or timestamp > beat:
                worker.last_heartbeat = timestamp

    def _observe(self, name, hostname, runtime):
        key = (name, hostname)
        histogram = self.runtimes.get(key)
        if histogram is None:
            histogram = self.runtimes[key] = [0] * (len(RUNTIME_BUCKETS) + 2)
        histogram[bisect_left(RUNTIME_BUCKETS, runtime)] += 1  # buckets are upper bounds, inclusive
        histogram[-1] += runtime

    def _worker(self, hostname):
        workers = self.workers
        worker = workers.get(hostname)
        if worker is None:
            worker = workers[hostname] = Worker(hostname)
            arrivals = self._worker_arrivals
            arrivals.append(hostname)
            if len(arrivals) > self.max_workers:
                workers.pop(arrivals.popleft(), None)
        return worker

    def _worker_event(self, subject, record, local_received):
        hostname = record["hostname"]
        self.event_count += 1
        worker = self._worker(hostname)
        for field in _WORKER_FIELDS:
            value = record.get(field)
            if value is not None:
                setattr(worker, field, value)
        if subject == "offline":
            worker.last_heartbeat = None
        elif local_received and record.get("timestamp"):
            if worker.last_heartbeat is None or local_received > worker.last_heartbeat:
                worker.last_heartbeat = local_received

    def clear_tasks(self):
        """``--clear-after``: forget the tasks, keep workers and counters."""
        self.tasks.clear()
        self._arrivals.clear()

    def changed_tasks(self):
        """The tasks changed since the last call, marked unchanged as they go."""
        for task in self.tasks.values():
            if task.changed:
                task.changed = False
                yield task

    def snapshot(self, now):
        """The ``snapshot`` record as of ``now`` (epoch seconds)."""
        by_state, by_name, by_worker, runtimes, waits = {}, {}, {}, {}, {}
        for task in self.tasks.values():
            state, name = task.state, task.name
            by_state[state] = by_state.get(state, 0) + 1
            per_name = by_name.setdefault(name, {})
            per_name[state] = per_name.get(state, 0) + 1
            if task.hostname is not None:
                per_worker = by_worker.setdefault(task.hostname, {})
                per_worker[state] = per_worker.get(state, 0) + 1
            if task.runtime is not None:
                runtimes.setdefault(name, []).append(task.runtime)
            wait = task.wait
            if wait is not None:
                waits.setdefault(name, []).append(wait)
        return {
            "type": "snapshot", "timestamp": now, "event_count": self.event_count,
            "gaps": self.gaps, "errors": self.errors, "ignored": self.ignored, "invalid": self.invalid,
            "workers": [worker.as_record(now) for worker in self.workers.values()],
            "tasks": {"count": len(self.tasks), "by_state": by_state, "by_name": by_name,
                      "by_worker": by_worker, "runtime": _summaries(runtimes)},
            "wait": _summaries(waits),
        }


def _summaries(samples):
    """name -> {count, p50, p95, max} of each name's samples (nearest-rank percentiles)."""
    result = {}
    for name, values in samples.items():
        values.sort()
        count = len(values)
        result[name] = {"count": count, "p50": values[(count - 1) * 50 // 100],
                        "p95": values[(count - 1) * 95 // 100], "max": values[-1]}
    return result
