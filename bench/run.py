#!/usr/bin/env python3
"""Run every benchmark in bench/ (each a script printing its own side-by-side table).

Benchmarks talk to real brokers: a private redis-server each starts itself and
the local RabbitMQ. They print ratios against the anchor (the celery CLI,
celery's Receiver/State) measured in the same run. Timings are reported,
never asserted.
"""

import glob
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv):
    only = set(argv)
    status = 0
    for script in sorted(glob.glob(os.path.join(HERE, "bench_*.py"))):
        name = os.path.basename(script)[len("bench_"):-3]
        if only and name not in only:
            continue
        print(f"\n=== {name} ===", flush=True)
        status |= subprocess.call([sys.executable, script], cwd=os.path.dirname(HERE))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
