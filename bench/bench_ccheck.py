#!/usr/bin/env python3
"""ccheck against the same facts gathered by the celery CLI, in one run, with real workers.

A full ``ccheck`` (every check, a 2 s event sample, -d naming the 10 workers)
on a private Redis with 10 workers and 200 queues holding one message each.
Floor (issue 15): 3 s wall or less. The anchor is what an operator runs by
hand for the same facts: ``celery -A tests.app inspect ping``, ``stats``,
``conf`` and ``registered`` one after the other, plus an LLEN per queue
(redis-py, one connection, no pipeline). Workers are solo-pool, concurrency 1,
without task events, as in bench_cctl. Median of several runs after a warm-up.
No worker consumes the 200 queues, so every ccheck run finds 200 crit
queues.consumers findings and exits 3. The 2 s sample is most of the floor:
a second row runs with --sample 0.1 to show what the rest of ccheck costs.
"""

import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.bench_cctl import CELERY, timed  # noqa: E402
from bench.common import exit_on_sigterm, median_time, print_table, start_workers, stop_workers  # noqa: E402
from tests.support import RedisServer, send_tasks  # noqa: E402

CCHECK = os.path.join(ROOT, "bin", "ccheck")
WORKERS, QUEUES = 10, 200


def llen_each(url, queues):
    import redis

    client = redis.Redis.from_url(url)
    try:
        return [client.llen(queue) for queue in queues]
    finally:
        client.close()


def main():
    exit_on_sigterm()
    logdir = tempfile.mkdtemp(prefix="bench-ccheck-")
    server = RedisServer(os.path.join(logdir, "redis")).start()
    url = server.url(0)
    workers = []
    rows = []
    try:
        start_workers(url, WORKERS, logdir, workers)
        queues = [f"bench-q{i:03d}" for i in range(QUEUES)]
        for queue in queues:
            send_tasks(url, queue, "tests.app.add", [1, 1])
        names = ",".join(worker.hostname for worker in workers)
        # exit 3: the 200 queues hold a message each and no worker consumes them (queues.consumers, crit)
        ours, ours_min, proc = timed([CCHECK, "-d", names], url, runs=5, statuses=(3,))
        findings = proc.stdout.count(b'"type":"finding"')
        rows.append(("ccheck -d W1,...,W10 (every check, 2 s sample)", 5, f"{ours:.3f}", f"{ours_min:.3f}", "1.0x",
                     f"exit {proc.returncode}, {findings} findings"))
        bare, bare_min, _ = timed([CCHECK, "-d", names, "--sample", "0.1"], url, runs=5, statuses=(3,))
        rows.append(("ccheck ... --sample 0.1 (the run without the sample)", 5, f"{bare:.3f}", f"{bare_min:.3f}",
                     f"{bare / ours:.2f}x", "what the 2 s sample leaves to the rest"))
        total = 0.0
        for command in ("ping", "stats", "conf", "registered"):
            theirs, theirs_min, _ = timed(CELERY + ["-A", "tests.app", "inspect", command, "--json"], url, runs=3)
            total += theirs
            rows.append((f"celery -A tests.app inspect {command} --json", 3, f"{theirs:.3f}", f"{theirs_min:.3f}",
                         f"{theirs / ours:.1f}x", ""))
        llen, llen_min = median_time(lambda: llen_each(url, queues), 5)
        total += llen
        rows.append((f"LLEN x {QUEUES} (redis-py, one connection)", 5, f"{llen:.3f}", f"{llen_min:.3f}",
                     f"{llen / ours:.2f}x", ""))
        rows.append(("celery CLI total (sequential)", "", f"{total:.3f}", "", f"{total / ours:.1f}x",
                     "no judging, no events, no queue consumers"))
    finally:
        stop_workers(workers)
        server.stop()
    print_table(("case", "runs", "median s", "min s", "vs ccheck", "note"), rows)
    print(f"\nfloor (<= 3 s wall for a full check): {'met' if ours <= 3 else 'NOT met'} ({ours:.3f} s)")
    print(f"(machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; {WORKERS} workers: solo pool, "
          f"concurrency 1, no task events; {QUEUES} queues of 1 message; at {time.strftime('%Y-%m-%d %H:%M')})")


if __name__ == "__main__":
    main()
