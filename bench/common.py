"""What the benchmarks share: child environments and repeated timings."""

import contextlib
import os
import signal
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor


def child_env(**extra):
    """The environment for timed child processes: bytecode caching on, as for an installed package."""
    env = dict(os.environ, **extra)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def median_time(run, runs, warmup=True):
    """``(median, fastest)`` seconds of ``run()`` over ``runs`` calls, after one untimed call."""
    if warmup:
        run()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times), min(times)


def print_table(header, rows):
    """Rows as left-aligned columns under ``header``."""
    widths = [max(len(str(line[i])) for line in rows + [header]) for i in range(len(header))]
    for line in [header] + rows:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)).rstrip())


@contextlib.contextmanager
def private_redis_and_vhost():
    """``(RedisServer, RabbitVhost)``: a private redis-server on a free port and a private RabbitMQ vhost, both
    gone afterwards."""
    from tests.support import RabbitVhost, RedisServer

    with tempfile.TemporaryDirectory() as workdir:
        server = RedisServer(workdir).start()
        try:
            vhost = RabbitVhost().create()
            try:
                yield server, vhost
            finally:
                vhost.delete()
        finally:
            server.stop()


def exit_on_sigterm():
    """A SIGTERM (timeout(1), kill) unwinds like Ctrl-C, so the benchmark's finally stops what it started."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def start_workers(url, count, logdir, started):
    """Start ``count`` solo-pool workers on ``url`` in parallel; return them.

    Each is appended to ``started`` before it starts, so that the caller's
    ``finally`` stops every one even when another failed or Ctrl-C came.
    """
    import celery.app  # noqa: F401  (imported once here: concurrent first imports in threads race)

    from tests.support import Worker

    workers = [Worker(url, name=f"w{i + 1}", pool="solo", concurrency=1, events=False, logdir=logdir)
               for i in range(count)]
    started += workers
    with ThreadPoolExecutor(count) as pool:
        list(pool.map(Worker.start, workers))  # a worker that did not start raises here
    return workers


def stop_workers(workers):
    """Stop every worker: all are told at once, then each is waited for (and killed if it does not go)."""
    for worker in workers:
        if worker.process is not None:
            worker.kill(signal.SIGTERM)
    for worker in workers:
        worker.stop()
