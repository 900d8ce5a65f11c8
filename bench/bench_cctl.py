#!/usr/bin/env python3
"""cctl against the celery CLI, side by side in one run, with real workers.

1. ``cctl ping -d w1,w2`` against ``celery -A tests.app inspect ping -d w1,w2``
   and ``celery inspect ping`` (no app, no -d), on Redis and on RabbitMQ.
   Floor (issue 4): cctl 0.3 s or less and at least 5x faster.
2. ``cctl stats`` with 8 workers against ``celery -A tests.app inspect stats --json``.
3. ``cctl revoke -`` of 10,000 ids from stdin: wall time and broadcasts sent,
   next to ``celery -A tests.app control revoke`` with the same ids as arguments.

Workers are solo-pool, concurrency 1, without events, to fit 10 of them on a
small shared machine. Wall times are of whole processes (start-up included),
median of several runs after one warm-up run; bytecode caching is on for the
child processes (PYTHONDONTWRITEBYTECODE removed), as for an installed package.
"""

import json
import os
import subprocess
import sys
import tempfile
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.common import (  # noqa: E402
    child_env, exit_on_sigterm, median_time, print_table, start_workers, stop_workers)
from tests.support import RabbitVhost, RedisServer, worker_env  # noqa: E402

CCTL = os.path.join(ROOT, "bin", "cctl")
CELERY = [sys.executable, "-m", "celery"]
ROWS = []


def timed(argv, url, runs, stdin=b"", statuses=(0,)):
    """Median and min wall time of ``argv`` (exiting with one of ``statuses``); returns (median, min, last
    CompletedProcess)."""
    env = child_env(**worker_env(url), CELOPS_BROKER_URL=url, CELERY_BROKER_URL=url)
    last = []

    def run():
        proc = subprocess.run(argv, cwd=ROOT, env=env, input=stdin, capture_output=True)
        if proc.returncode not in statuses:
            raise SystemExit(f"{argv[:6]} failed ({proc.returncode}): {proc.stderr.decode()[-500:]}")
        last[:] = [proc]

    median, fastest = median_time(run, runs)
    return median, fastest, last[0]


def row(transport, case, runs, median, fastest, baseline=None, note=""):
    ratio = f"{median / baseline:.1f}x" if baseline else "1.0x"
    ROWS.append((transport, case, runs, f"{median:.3f}", f"{fastest:.3f}", ratio, note))


def bench_ping(transport, url, w1, w2):
    destination = f"{w1.hostname},{w2.hostname}"
    ours, ours_min, proc = timed([CCTL, "ping", "-d", destination], url, runs=9)
    assert proc.stdout.count(b'"type":"reply"') == 2, proc.stdout
    row(transport, "cctl ping -d w1,w2", 9, ours, ours_min)
    theirs, theirs_min, _ = timed(CELERY + ["-A", "tests.app", "inspect", "ping", "-d", destination], url, runs=5)
    row(transport, "celery -A tests.app inspect ping -d w1,w2", 5, theirs, theirs_min, ours)
    plain, plain_min, _ = timed(CELERY + ["inspect", "ping"], url, runs=5)
    row(transport, "celery inspect ping", 5, plain, plain_min, ours)
    verdict = "met" if ours <= 0.3 and theirs / ours >= 5 else "NOT met"
    return f"{transport}: cctl ping -d w1,w2 {ours:.3f} s, {theirs / ours:.1f}x faster than celery -A: " \
           f"floor (<= 0.3 s, >= 5x) {verdict}"


def bench_stats(url, workers):
    count = len(workers)
    ours, ours_min, proc = timed([CCTL, "stats"], url, runs=5)
    replied = proc.stdout.count(b'"type":"reply"')
    row("redis", f"cctl stats ({count} workers, full 1 s deadline)", 5, ours, ours_min, note=f"{replied} replies")
    early, early_min, proc = timed([CCTL, "stats", "--expect", str(count), "-t", "10"], url, runs=5)
    replied = proc.stdout.count(b'"type":"reply"')
    row("redis", f"cctl stats --expect {count}", 5, early, early_min, ours, note=f"{replied} replies")
    theirs, theirs_min, proc = timed(CELERY + ["-A", "tests.app", "inspect", "stats", "--json"], url, runs=5)
    row("redis", "celery -A tests.app inspect stats --json", 5, theirs, theirs_min, ours,
        note=f"{len(json.loads(proc.stdout))} replies")


def bench_revoke(url, worker, count=10_000, batch=1000):
    ids = [str(uuid.uuid4()) for _ in range(count)]
    stdin = "\n".join(ids).encode() + b"\n"
    argv = [CCTL, "revoke", "-", "-d", worker.hostname, "-t", "60", "--batch-size", str(batch)]
    ours, ours_min, proc = timed(argv, url, runs=3, stdin=stdin)
    broadcasts = proc.stdout.count(b'"type":"reply"')  # one reply per broadcast from the one worker
    row("redis", f"cctl revoke - ({count} ids on stdin)", 3, ours, ours_min,
        note=f"{broadcasts} broadcasts of {batch} ids")
    theirs, theirs_min, _ = timed(CELERY + ["-A", "tests.app", "control", "revoke", *ids, "-d", worker.hostname,
                                            "-t", "60"], url, runs=3)
    row("redis", f"celery -A tests.app control revoke ({count} ids as args)", 3, theirs, theirs_min, ours,
        note="1 broadcast")


def main():
    exit_on_sigterm()
    logdir = tempfile.mkdtemp(prefix="bench-cctl-")
    redis = RedisServer(os.path.join(logdir, "redis")).start()
    vhost = RabbitVhost().create()
    workers = []
    verdicts = []
    try:
        url = redis.url(0)
        start_workers(url, 8, logdir, workers)
        amqp_workers = start_workers(vhost.url(), 2, logdir, workers)
        verdicts.append(bench_ping("redis", url, workers[0], workers[1]))
        verdicts.append(bench_ping("amqp", vhost.url(), *amqp_workers))
        bench_stats(url, workers[:8])
        bench_revoke(url, workers[0])
    finally:
        stop_workers(workers)
        vhost.delete()
        redis.stop()
    header = ("transport", "case", "runs", "median s", "min s", "vs cctl", "note")
    print_table(header, ROWS)
    print()
    for verdict in verdicts:
        print(verdict)
    print(f"(machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; "
          "workers: solo pool, concurrency 1, no events)")


if __name__ == "__main__":
    main()
