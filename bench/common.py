"""What the benchmarks share: child environments and repeated timings."""

import os
import statistics
import time


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
