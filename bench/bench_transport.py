#!/usr/bin/env python3
"""The transport refactor (issue 12): start-up, cctl ping through Sentinel, and resuming after a failover.

1. Start-up of every command (``--version``, whole process) and ``cctl ping``
   on a private Redis, for the code of $CELOPS_BENCH_BEFORE (default
   /work/main, before) and of this checkout (after), in one run.
   Floor: no command's start-up grows more than 10 ms.
2. ``cctl ping`` through a Sentinel URL against the master's plain URL.
   Floor: Sentinel adds at most 50 ms.
3. SENTINEL FAILOVER with a worker sending events: seconds from the
   promotion (the Sentinels name the new master) to cev-dump's gap record
   (subscribed on the new master) and to the first event received after it,
   for cev-dump and ``celery events --dump`` running side by side.
   Floor: cev-dump resumes within 2 s.
"""

import os
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.common import child_env, median_time, print_table  # noqa: E402
from celops.commands import COMMANDS  # noqa: E402
from tests.sentinel_support import MASTER_NAME, SentinelCluster  # noqa: E402
from tests.support import RedisServer, Worker, worker_env  # noqa: E402

BEFORE = os.environ.get("CELOPS_BENCH_BEFORE", "/work/main")
RUNS = 7


def timed(tree, *argv):
    env = child_env(PYTHONPATH=tree)
    return median_time(lambda: subprocess.run([sys.executable, "-m", "celops.commands", *argv], env=env,
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), RUNS)[0]


def first_line_after(process, promoted, arrivals, name):
    for line in process.stdout:
        now = time.time()
        if promoted and b"celops-gap" in line:
            arrivals["cev-dump resubscribed"] = now - promoted[0]
        if promoted and now > promoted[0] and (b"heartbeat" in line or b"worker-heartbeat" in line
                                               or b"task" in line) and b"celops-gap" not in line:
            arrivals[name] = now - promoted[0]
            return


def main():
    with tempfile.TemporaryDirectory() as tmp:
        redis_server = RedisServer(os.path.join(tmp, "redis")).start()
        cluster = SentinelCluster(os.path.join(tmp, "sentinel")).start()
        options = cluster.transport_options()
        plain_worker = Worker(redis_server.url(0), name="plain", concurrency=1, pool="solo", logdir=tmp).start()
        worker = Worker(cluster.url(), name="sentinel", concurrency=1, pool="solo", transport_options=options,
                        logdir=tmp).start()
        try:
            rows = []
            for command in sorted(COMMANDS):
                before, after = timed(BEFORE, command, "--version"), timed(ROOT, command, "--version")
                rows.append([f"{command} --version", f"{before * 1000:.0f} ms", f"{after * 1000:.0f} ms",
                             f"{(after - before) * 1000:+.0f} ms"])
            ping = ["cctl", "-b", redis_server.url(0), "ping", "-d", plain_worker.hostname]
            before, after = timed(BEFORE, *ping), timed(ROOT, *ping)
            rows.append(["cctl ping (redis://)", f"{before * 1000:.0f} ms", f"{after * 1000:.0f} ms",
                         f"{(after - before) * 1000:+.0f} ms"])
            print_table(["start-up", "before", "after", "change"], rows)

            sentinel_url = f"{cluster.url()}?master_name={MASTER_NAME}"
            master_url = f"redis://127.0.0.1:{cluster.master_port()}/0"
            direct = timed(ROOT, "cctl", "-b", master_url, "ping", "-d", worker.hostname)
            through = timed(ROOT, "cctl", "-b", sentinel_url, "ping", "-d", worker.hostname)
            print()
            print_table(["cctl ping", "master URL", "Sentinel URL", "Sentinel adds"],
                        [["median", f"{direct * 1000:.0f} ms", f"{through * 1000:.0f} ms",
                          f"{(through - direct) * 1000:+.0f} ms"]])

            dump = subprocess.Popen([os.path.join(ROOT, "bin", "cev-dump"), "-b", sentinel_url, "-u"],
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            celery = subprocess.Popen([sys.executable, "-m", "celery", "-A", "tests.app", "events", "--dump"],
                                      cwd=ROOT, env=worker_env(cluster.url(), options), stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL)
            promoted, arrivals = [], {}
            readers = [threading.Thread(target=first_line_after, args=(process, promoted, arrivals, name),
                                        daemon=True) for process, name in ((dump, "cev-dump"),
                                                                           (celery, "celery events --dump"))]
            for reader in readers:
                reader.start()
            time.sleep(5)  # both subscribed and receiving heartbeats (a benchmark, not a test)
            cluster.failover()
            promoted.append(time.time())
            for reader in readers:
                reader.join(60)
            for process in (dump, celery):
                process.kill()
                process.wait()
            print()
            print_table(["after SENTINEL FAILOVER", "first event after promotion"],
                        [[name, f"{arrivals[name]:.2f} s" if name in arrivals else "none within 60 s"]
                         for name in ("cev-dump resubscribed", "cev-dump", "celery events --dump")])
            print("(the worker itself moves to the new master only when the old one drops its clients: until "
                  "then its events reach only the demoted master, which celery events --dump goes on reading)")
        finally:
            worker.stop()
            plain_worker.stop()
            cluster.stop()
            redis_server.stop()


if __name__ == "__main__":
    main()
