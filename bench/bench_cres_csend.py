#!/usr/bin/env python3
"""cres and csend against the celery CLI and celery's Python API, side by side in one run, on a private Redis.

1. ``cres -`` of 10,000 ids against ``celery result ID`` in a loop (a sample of
   runs, scaled to 10,000) and against ``AsyncResult(id).get()`` in Python.
   Floor (issue 14): cres at least 20x faster than the ``celery result`` loop.
2. ``cres --state FAILURE`` over 100,000 stored results (1 in 100 failed).
3. ``csend -`` of 10,000 tasks against ``celery call`` in a loop (a sample,
   scaled) and ``app.send_task`` in a Python loop. Floor: csend >= 5,000 tasks/s.

No worker runs: results are stored through celery's own backend, and sent
tasks stay queued (the queue is flushed between runs). Wall times are of whole
processes, start-up included, median of several runs after one warm-up run.
"""

import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.common import child_env, median_time, print_table  # noqa: E402
from tests.support import RedisServer  # noqa: E402

CRES = os.path.join(ROOT, "bin", "cres")
CSEND = os.path.join(ROOT, "bin", "csend")
CELERY = [sys.executable, "-m", "celery"]
ROWS = []
SAMPLE = 10  # celery CLI runs timed, then scaled


def store_results(url, count, failed_every=0):
    """``count`` results in celery's own format, written through its backend's encoder; returns the ids."""
    from celery import Celery

    app = Celery("bench", set_as_current=False)
    app.conf.result_backend = url
    backend = app.backend
    client = backend.client
    ids = [str(uuid.uuid4()) for _ in range(count)]
    done = datetime.datetime.now(datetime.timezone.utc).isoformat()
    for start in range(0, count, 5000):
        pipe = client.pipeline(transaction=False)
        for number, task_id in enumerate(ids[start:start + 5000], start):
            failed = failed_every and number % failed_every == 0
            meta = {"status": "FAILURE" if failed else "SUCCESS", "task_id": task_id, "date_done": done,
                    "result": {"exc_type": "ValueError", "exc_message": ["x"], "exc_module": "builtins"}
                    if failed else number, "traceback": "Traceback ..." if failed else None, "children": []}
            pipe.set(backend.get_key_for_task(task_id), backend.encode(meta))
        pipe.execute()
    app.close()
    return ids


def timed(argv, runs, stdin=b"", env=None):
    last = []

    def run():
        proc = subprocess.run(argv, cwd=ROOT, env=child_env(**(env or {})), input=stdin, capture_output=True)
        if proc.returncode != 0:
            raise SystemExit(f"{argv[:6]} failed ({proc.returncode}): {proc.stderr.decode()[-500:]}")
        last[:] = [proc]

    median, fastest = median_time(run, runs)
    return median, fastest, last[0]


def row(case, runs, seconds, baseline=None, note=""):
    ratio = f"{seconds / baseline:.1f}x" if baseline else "1.0x"
    ROWS.append((case, runs, f"{seconds:.3f}", ratio, note))


def python_loop(code, runs=3, stdin=b""):
    """Median wall time of a Python snippet run in a fresh interpreter (its own start-up included)."""
    median, _, _ = timed([sys.executable, "-c", code], runs, stdin=stdin)
    return median


def cli_loop(case, invocations, count, ours):
    """The celery CLI once per item: SAMPLE invocations timed in one shell loop, scaled to ``count``."""
    sample, _, _ = timed(["sh", "-c", " ".join(f"{' '.join(CELERY)} {args} >/dev/null;" for args in invocations)],
                         1)
    loop = sample / len(invocations) * count
    row(f"{case}, in a loop ({len(invocations)} runs timed, x{count // len(invocations)})", 1, loop, ours,
        note=f"{sample / len(invocations):.3f} s each")
    return loop


def bench_cres_ids(url, count=10_000):
    ids = store_results(url, count)
    stdin = "\n".join(ids).encode() + b"\n"
    ours, _, proc = timed([CRES, "--backend", url, "-"], 5, stdin=stdin)
    assert proc.stdout.count(b'"state":"SUCCESS"') == count, proc.stdout[:300]
    row(f"cres - ({count} ids on stdin)", 5, ours, note=f"{count / ours:,.0f} ids/s")
    loop = cli_loop("celery result ID", [f"--result-backend {url} result {task_id}" for task_id in ids[:SAMPLE]],
                    count, ours)
    api = python_loop(
        "from celery import Celery; import sys\n"
        f"app = Celery(set_as_current=False); app.conf.result_backend = {url!r}\n"
        "for task_id in sys.stdin.read().split(): app.AsyncResult(task_id).get(timeout=10)\n", stdin=stdin)
    row(f"AsyncResult(id).get() for {count} ids, one Python process", 3, api, ours)
    verdict = "met" if loop / ours >= 20 else "NOT met"
    return f"cres - of {count} ids: {loop / ours:.0f}x faster than the celery result loop: floor (>= 20x) {verdict}"


def bench_cres_listing(url, count=100_000):
    store_results(url, count, failed_every=100)
    ours, _, proc = timed([CRES, "--backend", url, "--state", "FAILURE"], 3)
    found = proc.stdout.count(b'"state":"FAILURE"')
    assert found == count // 100, found
    row(f"cres --state FAILURE over {count} results", 3, ours, note=f"{found} failures, {count / ours:,.0f} results/s")
    counted, _, _ = timed([CRES, "--backend", url, "--count"], 3)
    row(f"cres --count over {count} results", 3, counted, ours, note="decodes every result")


def bench_csend(url, count=10_000):
    import redis

    client = redis.Redis.from_url(url)
    records = "".join(json.dumps({"name": "tests.app.add", "args": [n, n], "kwargs": {}}) + "\n"
                      for n in range(count)).encode()
    ours, _, proc = timed([CSEND, "-b", url, "-"], 3, stdin=records)
    assert proc.stdout.count(b'"type":"sent"') == count and client.llen("celery") >= count
    client.flushdb()
    row(f"csend - ({count} records on stdin)", 3, ours, note=f"{count / ours:,.0f} tasks/s")
    cli_loop("celery call", [f"-b {url} call tests.app.add --args '[{n}, {n}]'" for n in range(SAMPLE)],
             count, ours)
    client.flushdb()
    api = python_loop(
        "from celery import Celery\n"
        f"app = Celery(broker={url!r}, set_as_current=False)\n"
        f"with app.producer_or_acquire() as producer:\n"
        f"    for n in range({count}): app.send_task('tests.app.add', (n, n), producer=producer)\n")
    client.flushdb()
    row(f"app.send_task in a loop, one Python process ({count})", 3, api, ours,
        note=f"{count / api:,.0f} tasks/s")
    verdict = "met" if count / ours >= 5000 else "NOT met"
    return f"csend - of {count} tasks: {count / ours:,.0f} tasks/s, start-up included: floor (>= 5,000/s) {verdict}"


def main():
    workdir = tempfile.mkdtemp(prefix="bench-cres-")
    redis = RedisServer(os.path.join(workdir, "redis")).start()
    verdicts = []
    started = time.monotonic()
    try:
        verdicts.append(bench_cres_ids(redis.url(1)))
        bench_cres_listing(redis.url(2))
        verdicts.append(bench_csend(redis.url(3)))
    finally:
        redis.stop()
    header = ("case", "runs", "median s", "vs ours", "note")
    print_table(header, ROWS)
    print()
    for verdict in verdicts:
        print(verdict)
    print(f"(machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; "
          f"bench took {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
