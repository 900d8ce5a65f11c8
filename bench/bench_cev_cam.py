#!/usr/bin/env python3
"""cev-cam's State against celery's State, on the same synthetic event stream.

1M events (default) of full task lifecycles (received, started, succeeded
or failed) across 20 workers and 50 task names, with worker heartbeats, are
written once as an NDJSON file, as cev-dump writes them. Reported:

1. ingest throughput on the first --celery-events events (300,000): cev-cam's
   path (the NDJSON reader decoding them + the lean State) against celery's
   ``State.event`` on the same events already decoded in memory, both with
   celery's default table size (10,000 tasks) and with 100,000;
2. the whole command, ``cev-cam --once FILE`` (decode, State, one snapshot),
   and the same with ``--camera`` (a real celery State, for Polaroid cameras);
3. memory: RSS while streaming the file into each State with a 100,000-task
   cap (``--max-tasks`` / ``max_tasks_in_memory``), at quarters of the
   stream and peak (VmHWM), each in a fresh process;
4. the live pipeline ``cev-dump | cev-cam`` against bench_cev_dump.py's
   publisher at 100k events/s.

celery's State is slow with a large table (its time heap pops from the front
of a list of 4x max_tasks entries), hence the ingest's shorter stream.
"""

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import orjson  # noqa: E402

from bench.bench_cev_dump import publish, synthetic_events, wait_subscribed  # noqa: E402
from tests.support import RedisServer  # noqa: E402

PY = sys.executable
WORKERS, NAMES = 20, 50


def write_stream(path, count, seed=1):
    """``count`` events: lifecycles of 3 events, a heartbeat from a worker after every 20."""
    rng = random.Random(seed)
    hosts = [f"celery@worker{i}" for i in range(WORKERS)]
    names = [f"proj.tasks.task{i}" for i in range(NAMES)]
    now, clock, written = time.time() - 3600, 0, 0
    with open(path, "wb") as out:
        while written < count:
            host, name = rng.choice(hosts), rng.choice(names)
            uuid = "%032x" % rng.getrandbits(128)
            uuid = f"{uuid[:8]}-{uuid[8:12]}-{uuid[12:16]}-{uuid[16:20]}-{uuid[20:]}"
            outcome = ("task-failed", {"exception": "ValueError('boom')", "traceback": "Traceback..."}) \
                if rng.random() < 0.05 else ("task-succeeded", {"result": "4", "runtime": rng.expovariate(20)})
            for kind, fields in (("task-received", {"name": name, "args": "(2, 2)", "kwargs": "{}",
                                                    "root_id": uuid, "parent_id": None, "retries": 0,
                                                    "eta": None, "expires": None}),
                                 ("task-started", {}), outcome):
                clock += 1
                now += 0.0002
                event = {"hostname": host, "utcoffset": 0, "pid": 4242, "clock": clock, "uuid": uuid,
                         "timestamp": now, "type": kind, "local_received": now + 0.0003, "name": name}
                event.update(fields)
                out.write(orjson.dumps(event) + b"\n")
                written += 1
                if written % 20 == 0:
                    clock += 1
                    out.write(orjson.dumps({
                        "hostname": rng.choice(hosts), "utcoffset": 0, "pid": 4242, "clock": clock, "freq": 2.0,
                        "sw_ident": "py-celery", "sw_ver": "5.4.0", "sw_sys": "Linux", "active": 1,
                        "processed": written, "loadavg": [0.5, 0.4, 0.3], "timestamp": now,
                        "type": "worker-heartbeat", "local_received": now + 0.0003}) + b"\n")
                    written += 1


def ours_ingest(path, max_tasks):
    from celops.core.ndjson import Reader
    from celops.core.state import State

    state = State(max_tasks=max_tasks)
    event = state.event
    start = time.perf_counter()
    count = 0
    for record in Reader([path], None, print).records():
        event(record)
        count += 1
    return count / (time.perf_counter() - start)


def celery_ingest(events, max_tasks):
    from celery.events.state import State

    state = State(max_tasks_in_memory=max_tasks)
    event = state.event
    start = time.perf_counter()
    for record in events:
        event(record)
    return len(events) / (time.perf_counter() - start)


MEMORY_PROBE = r"""
import sys, orjson
path, which, limit, cap = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) / 1024
if which == "celops":
    from celops.core.state import State
    event = State(max_tasks=cap).event
else:
    from celery.events.state import State
    event = State(max_tasks_in_memory=cap).event
marks = [limit * q // 4 for q in (1, 2, 3, 4)]
print(round(rss("VmRSS:"), 1), end=" ")
with open(path, "rb") as stream:
    for number, line in enumerate(stream, 1):
        event(orjson.loads(line))
        if number in marks:
            print(round(rss("VmRSS:"), 1), end=" ")
        if number == limit:
            break
print(round(rss("VmHWM:"), 1))
"""


def memory(path, which, limit, cap=100000):
    """RSS in MB: at start, at each quarter of ``limit`` events, and the peak."""
    out = subprocess.run([PY, "-c", MEMORY_PROBE, path, which, str(limit), str(cap)], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout.split()
    return [float(value) for value in out]


def whole_command(path, count, *extra):
    """Events/s of ``cev-cam --once --max-tasks 100000 [extra] FILE``, start-up included."""
    start = time.perf_counter()
    subprocess.run([os.path.join(ROOT, "bin", "cev-cam"), "--once", "--max-tasks", "100000", *extra, path],
                   stdout=subprocess.DEVNULL, check=True)
    return count / (time.perf_counter() - start)


def live_pipeline(rate=100000, count=300000):
    """cev-dump | cev-cam --once against a private Redis, fed by cev-dump's bench publisher."""
    with tempfile.TemporaryDirectory() as directory:
        server = RedisServer(directory).start()
        try:
            url = server.url(0)
            commands = synthetic_events(count)
            pipeline = subprocess.Popen(f"'{ROOT}/bin/cev-dump' -b {url} --idle 5 | '{ROOT}/bin/cev-cam' --once",
                                        shell=True, stdout=subprocess.PIPE)
            wait_subscribed(server.port, 0, pipeline, "cev-dump")
            elapsed = publish(server.port, commands, rate)
            out, _ = pipeline.communicate(timeout=600)
            snapshot = orjson.loads(out.splitlines()[-1])
            return count, count / elapsed, snapshot["event_count"], snapshot["gaps"]
        finally:
            server.stop()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--celery-events", type=int, default=300_000,
                        help="events both States ingest for the throughput comparison")
    parser.add_argument("--celery-memory-events", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "events.ndjson")
        write_stream(path, args.events)
        head = os.path.join(directory, "head.ndjson")  # both States ingest the same events
        with open(path, "rb") as stream, open(head, "wb") as out:
            out.writelines(line for _, line in zip(range(args.celery_events), stream))
        with open(head, "rb") as stream:
            decoded = [orjson.loads(line) for line in stream]
        print(f"cev-cam State vs celery State: {args.events:,} events, {WORKERS} workers, {NAMES} task names "
              f"(ingest on the first {len(decoded):,}: celery's pre-decoded, ours decoding)\n")
        print(f"{'ingest, events/s':<44}{'cev-cam':>12}{'celery':>12}{'ratio':>8}")
        for cap in (10000, 100000):
            ours = ours_ingest(head, cap)
            theirs = celery_ingest([dict(event) for event in decoded], cap)
            print(f"{f'table of {cap:,} tasks (ours: incl. decoding)':<44}{ours:>12,.0f}{theirs:>12,.0f}"
                  f"{ours / theirs:>7.1f}x")
        print(f"{'cev-cam --once FILE, whole command':<44}{whole_command(path, args.events):>12,.0f}")
        camera = whole_command(head, args.celery_events, "--camera", "celery.events.snapshot.Polaroid")
        print(f"{'  the same with --camera (a celery State)':<44}{camera:>12,.0f}"
              f"{'':>20}  (first {args.celery_events:,})")
        print(f"\n{'RSS MB, cap 100,000 tasks':<28}{'start':>8}{'25%':>8}{'50%':>8}{'75%':>8}{'100%':>8}{'peak':>8}")
        rows = [("cev-cam State", memory(path, "celops", args.events)),
                (f"celery State ({args.celery_memory_events:,} ev)", memory(path, "celery", args.celery_memory_events))]
        for label, values in rows:
            print(f"{label:<28}" + "".join(f"{value:>8.0f}" for value in values))
        ours_peak, theirs_peak = rows[0][1][-1], rows[1][1][-1]
        print(f"{'peak ratio (celery / ours)':<28}{theirs_peak / ours_peak:>47.1f}x")
    sent, rate, applied, gaps = live_pipeline()
    print()
    print(f"live pipeline cev-dump | cev-cam: {sent:,} events published at {rate:,.0f}/s; "
          f"cev-cam applied {applied:,} ({sent - applied:,} lost), {gaps} gap records")


if __name__ == "__main__":
    main()
