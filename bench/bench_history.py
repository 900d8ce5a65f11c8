#!/usr/bin/env python3
"""cev-cam's SQL history: snapshots per second into SQLite and into PostgreSQL, for the same stream.

bench_cev_cam's synthetic stream (task lifecycles of 3 events across 20
workers and 50 task names, heartbeats) is fed into one lean State; every
--events-per-shot events the sink takes a shot, as the shutter thread would:
one transaction holding a snapshots row (the snapshot record as JSON) and an
upsert of the tasks changed since the last shot. Only the shots are timed;
"(no database)" times the part of a shot both sinks share (the snapshot
record and its JSON, the changed tasks' rows), so the rest is the database's.

SQLite is a file in a temporary directory (WAL, synchronous=NORMAL);
PostgreSQL is a private database on the local server (127.0.0.1:5432, user
postgres; --postgres-url for another), created and dropped here, over TCP
with its default synchronous_commit=on: each shot waits for its WAL flush.
Both run on this machine, so the network is loopback.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import orjson  # noqa: E402

from bench.bench_cev_cam import write_stream  # noqa: E402
from bench.common import print_table  # noqa: E402
from celops.core.sinks import PostgresSink, SqliteSink  # noqa: E402
from celops.core.state import State  # noqa: E402


class SnapshotOnly:
    """What every sql shot does before the database: the snapshot record, its JSON, the changed tasks' rows."""

    def shoot(self, state, now):
        import json

        from celops.core.sinks import _TASK_COLUMNS

        json.dumps(state.snapshot(now))
        [tuple(getattr(task, column) for column in _TASK_COLUMNS) for task in state.changed_tasks()]

    def close(self):
        pass


def shots(sink, events, per_shot):
    """Feed ``events`` into a fresh State, a shot every ``per_shot``; returns each shot's seconds."""
    state = State()
    times = []
    for start in range(0, len(events), per_shot):
        for event in events[start:start + per_shot]:
            state.event(event)
        began = time.perf_counter()
        sink.shoot(state, time.time())
        times.append(time.perf_counter() - began)
    return times


def private_postgres(server):
    """(URL of a fresh database, a function dropping it)."""
    import psycopg

    name = f"celops_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")

    def drop():
        with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    return f"{server}/{name}", drop


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--events-per-shot", type=int, nargs="+", default=[30, 3000],
                        help="events between shots (a lifecycle is 3 events, so about a third as many tasks)")
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432",
                        help="the server, without a database name")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        stream = os.path.join(workdir, "events.ndjson")
        write_stream(stream, args.events)
        with open(stream, "rb") as source:
            events = [orjson.loads(line) for line in source]
        for per_shot in args.events_per_shot:
            database, drop = private_postgres(args.postgres_url)
            sinks = {"(no database)": SnapshotOnly(), "sqlite": SqliteSink(os.path.join(workdir, f"history-{per_shot}.db")),
                     "postgresql": PostgresSink(database)}
            try:
                for name, sink in sinks.items():
                    times = shots(sink, events, per_shot)
                    rows.append([name, per_shot, len(times), f"{statistics.median(times) * 1000:.2f}",
                                 f"{max(times) * 1000:.1f}", f"{len(times) / sum(times):.0f}"])
            finally:
                for sink in sinks.values():
                    sink.close()
                drop()
    print(f"{args.events} events; a shot upserts the tasks changed since the last one (about events/shot / 3)")
    print_table(["sink", "events/shot", "shots", "median ms", "max ms", "shots/s"], rows)


if __name__ == "__main__":
    main()
