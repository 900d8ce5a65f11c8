"""Where cev-cam's snapshots go: NDJSON on stdout, an SQLite history, a Prometheus textfile.

Each sink has ``shoot(state, now)`` (one snapshot), ``cleanup(now)`` (periodic
housekeeping) and ``close()``.
"""

import json
import os
from contextlib import contextmanager

SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshots (
    id INTEGER PRIMARY KEY,
    timestamp REAL NOT NULL,
    event_count INTEGER NOT NULL,
    workers_alive INTEGER NOT NULL,
    tasks INTEGER NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS snapshots_timestamp ON snapshots (timestamp);
CREATE TABLE IF NOT EXISTS tasks (
    uuid TEXT PRIMARY KEY,
    name TEXT,
    state TEXT NOT NULL,
    hostname TEXT,
    timestamp REAL,
    received REAL,
    started REAL,
    succeeded REAL,
    failed REAL,
    runtime REAL,
    retries INTEGER,
    exception TEXT,
    snapshot_id INTEGER REFERENCES snapshots (id)
);
CREATE INDEX IF NOT EXISTS tasks_timestamp ON tasks (timestamp);
"""

_TASK_COLUMNS = ("uuid", "name", "state", "hostname", "timestamp", "received", "started",
                 "succeeded", "failed", "runtime", "retries", "exception")

# celery-exporter's counter for each task event subject (its names, so dashboards carry over)
PROM_TASK_COUNTERS = {
    "sent": "celery_task_sent", "received": "celery_task_received", "started": "celery_task_started",
    "succeeded": "celery_task_succeeded", "failed": "celery_task_failed",
    "rejected": "celery_task_rejected", "revoked": "celery_task_revoked", "retried": "celery_task_retried",
}

PROM_MAPPING = (
    "celery_worker_up{hostname} gauge: 1 alive, 0 offline (celery-exporter's name). "
    "celery_worker_tasks_active{hostname} gauge: the worker's last heartbeat 'active' "
    "(celery-exporter's name). "
    "celery_task_{sent,received,started,succeeded,failed,rejected,revoked,retried}_total{name,hostname} "
    "counters: task events seen (celery-exporter's names; no queue_name or exception label). "
    "celery_task_runtime{name,hostname} histogram, seconds, prometheus_client's default buckets "
    "(celery-exporter's name). "
    "celery_tasks{name,state} gauge: tasks in cev-cam's task table by state (celops only). "
    "celops_events_total counter: events applied; celops_event_gaps_total counter: cev-dump gap records; "
    "celops_events_invalid_total counter: events rejected for a field of the wrong type or out of range."
)


class NdjsonSink:
    """``snapshot`` records on stdout; with ``tasks`` also a ``task`` record per changed task."""

    def __init__(self, out, tasks=False):
        self.out = out
        self.tasks = tasks

    def shoot(self, state, now):
        if self.tasks:
            for task in state.changed_tasks():
                self.out.write(task.as_record())
        self.out.write(state.snapshot(now))
        self.out.flush()

    def cleanup(self, now):
        pass

    def close(self):
        pass


class SqliteSink:
    """Snapshot rows and task rows (upserted by uuid), one transaction per shot, WAL journal.

    WAL with ``synchronous=NORMAL`` keeps the file consistent when the writer
    is killed at any point: a shot is in, or it is not.
    """

    def __init__(self, path, retain_days=None):
        import sqlite3

        self.path = path
        self.retain_days = retain_days
        self.db = None
        with self._writing():
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)  # shots come from the timer thread
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SQLITE_SCHEMA)

    @contextmanager
    def _writing(self):
        """SQLite's errors (no such directory, read-only, disk full, not a database) as exit 73 naming the path."""
        import sqlite3

        from celops.core.outfiles import cannot_create

        try:
            yield
        except sqlite3.Error as exc:
            raise cannot_create(self.path, exc) from None

    def shoot(self, state, now):
        snapshot = state.snapshot(now)
        alive = sum(1 for worker in snapshot["workers"] if worker["alive"])
        rows = [tuple(getattr(task, column) for column in _TASK_COLUMNS) for task in state.changed_tasks()]
        with self._writing(), self.db:
            self.db.execute("BEGIN")
            cursor = self.db.execute(
                "INSERT INTO snapshots (timestamp, event_count, workers_alive, tasks, record) "
                "VALUES (?, ?, ?, ?, ?)",
                (now, snapshot["event_count"], alive, snapshot["tasks"]["count"], json.dumps(snapshot)))
            snapshot_id = cursor.lastrowid
            placeholders = ", ".join("?" * (len(_TASK_COLUMNS) + 1))
            updates = ", ".join(f"{column} = excluded.{column}" for column in _TASK_COLUMNS[1:])
            self.db.executemany(
                f"INSERT INTO tasks ({', '.join(_TASK_COLUMNS)}, snapshot_id) VALUES ({placeholders}) "
                f"ON CONFLICT (uuid) DO UPDATE SET {updates}, snapshot_id = excluded.snapshot_id",
                [row + (snapshot_id,) for row in rows])

    def cleanup(self, now):
        """``--retain DAYS``: drop snapshots and tasks older than that.

        A task no worker reported on (only sent) has no timestamp of its own:
        the snapshot that last wrote it dates it.
        """
        if self.retain_days is None:
            return
        cutoff = now - self.retain_days * 86400
        with self._writing(), self.db:
            self.db.execute("BEGIN")
            self.db.execute("DELETE FROM tasks WHERE coalesce(timestamp, (SELECT timestamp FROM snapshots "
                            "WHERE snapshots.id = tasks.snapshot_id)) < ?", (cutoff,))
            self.db.execute("DELETE FROM snapshots WHERE timestamp < ?", (cutoff,))

    def close(self):
        if self.db is not None:
            self.db.close()


class PromSink:
    """The Prometheus text format, written atomically to a node_exporter textfile."""

    def __init__(self, path):
        from prometheus_client import CollectorRegistry

        from celops.core.outfiles import check_writable

        check_writable(path)
        self.path = path
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        self._state = self._now = None

    def shoot(self, state, now):
        from celops.core.outfiles import write_textfile

        self._state, self._now = state, now
        write_textfile(self.path, self.registry)

    def collect(self):
        """prometheus_client's Collector protocol: the metric families of the current state."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        from celops.core.state import RUNTIME_BUCKETS

        state, now = self._state, self._now
        up = GaugeMetricFamily("celery_worker_up", "Worker alive by heartbeat (1) or offline (0).",
                               labels=["hostname"])
        active = GaugeMetricFamily("celery_worker_tasks_active", "Tasks the worker is running.",
                                   labels=["hostname"])
        for worker in state.workers.values():
            up.add_metric([worker.hostname], 1 if worker.alive(now) else 0)
            if worker.active is not None:
                active.add_metric([worker.hostname], worker.active)
        yield up
        yield active
        counters = {subject: CounterMetricFamily(metric, f"Task {subject} events seen.",
                                                 labels=["name", "hostname"])
                    for subject, metric in PROM_TASK_COUNTERS.items()}
        for (subject, name, hostname), count in state.task_events.items():
            if subject in counters:
                counters[subject].add_metric([name or "", hostname or ""], count)
        yield from counters.values()
        runtime = HistogramMetricFamily("celery_task_runtime", "Task runtime in seconds.",
                                        labels=["name", "hostname"])
        bounds = [str(bound) for bound in RUNTIME_BUCKETS] + ["+Inf"]
        for (name, hostname), histogram in state.runtimes.items():
            cumulative, buckets = 0, []
            for bound, count in zip(bounds, histogram):
                cumulative += count
                buckets.append((bound, cumulative))
            runtime.add_metric([name or "", hostname or ""], buckets, histogram[-1])
        yield runtime
        tasks = GaugeMetricFamily("celery_tasks", "Tasks in cev-cam's table by name and state.",
                                  labels=["name", "state"])
        counts = {}
        for task in state.tasks.values():
            key = (task.name or "", task.state)
            counts[key] = counts.get(key, 0) + 1
        for (name, task_state), count in counts.items():
            tasks.add_metric([name, task_state], count)
        yield tasks
        yield CounterMetricFamily("celops_events", "Events applied.", value=state.event_count)
        yield CounterMetricFamily("celops_event_gaps", "Gap records from cev-dump.", value=state.gaps)
        yield CounterMetricFamily("celops_events_invalid", "Events rejected for a field of the wrong type or "
                                  "out of range.", value=state.invalid)

    def cleanup(self, now):
        pass

    def close(self):
        pass


def open_sink(args, out):
    """The sink ``--sink`` names, set up from the command's options."""
    if args.sink == "sqlite":
        return SqliteSink(os.path.expanduser(args.database), args.retain)
    if args.sink == "prom":
        return PromSink(os.path.expanduser(args.textfile))
    return NdjsonSink(out, tasks=args.tasks)
