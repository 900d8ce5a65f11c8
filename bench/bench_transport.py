#!/usr/bin/env python3
"""The transport refactor (issue 12): start-up, cctl ping through Sentinel, and resuming after a failover.

1. Start-up of every command (``--version``, whole process) and ``cctl ping``
   on a private Redis, for the code of $CELOPS_BENCH_BEFORE (default
   /work/main; give it a checkout of the commit before the refactor) and of
   this checkout, the two run in turn so that a busy machine weighs on both.
   Floor: no command's start-up grows more than 10 ms.
2. ``cctl ping`` through a Sentinel URL against the master's plain URL, in turn.
   Floor: Sentinel adds at most 50 ms.
3. SENTINEL FAILOVER with a worker running tasks sent without pause, cev-dump
   and ``celery events --dump`` side by side: seconds from the promotion (the
   Sentinels' +switch-master) to cev-dump's subscription on the new master, to
   the demotion of the old one (it drops its clients then, and the workers
   move), to each reader's first event after the promotion and after the
   demotion, and to cev-dump's celops-gap record; which events each of the
   two missed; which tasks sent meanwhile ever ran.
   Floor: cev-dump resumes within 2 s of the promotion.
"""

import datetime
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.common import child_env, print_table  # noqa: E402
from celops.commands import COMMANDS  # noqa: E402
from tests.sentinel_support import MASTER_NAME, SentinelCluster, command  # noqa: E402
from tests.support import RedisServer, Worker, wait_for, worker_env  # noqa: E402

BEFORE = os.environ.get("CELOPS_BENCH_BEFORE", "/work/main")
RUNS = 21
RUN_ON_AFTER_FAILOVER = 20.0  # seconds of tasks after the promotion: the demoted master gives up after ~10


def in_turn(runs, **argvs):
    """Median seconds of each ``name=(tree, argv)`` process, the names run one after the other ``runs`` times."""
    times = {name: [] for name in argvs}
    for attempt in range(runs + 1):
        for name, (tree, argv) in argvs.items():
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "celops.commands", *argv], env=child_env(PYTHONPATH=tree),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if attempt:  # the first round warms the caches
                times[name].append(time.perf_counter() - started)
    return {name: statistics.median(spent) for name, spent in times.items()}


def milliseconds(first, second):
    """The two times and what the second adds to the first."""
    return [f"{first * 1000:.0f} ms", f"{second * 1000:.0f} ms", f"{(second - first) * 1000:+.0f} ms"]


def startup(redis_url, hostname):
    rows = []
    checks = [[command, "--version"] for command in sorted(COMMANDS)]
    checks.append(["cctl", "-b", redis_url, "ping", "-d", hostname])
    for argv in checks:
        took = in_turn(RUNS, before=(BEFORE, argv), after=(ROOT, argv))
        label = f"{argv[0]} --version" if argv[1] == "--version" else "cctl ping (redis://)"
        rows.append([label, *milliseconds(took["before"], took["after"])])
    print_table(["start-up (median)", "before", "after", "change"], rows)


def sentinel_cost(cluster, hostname):
    sentinel_url = f"{cluster.url()}?master_name={MASTER_NAME}"
    master_url = f"redis://127.0.0.1:{cluster.master_port()}/0"
    took = in_turn(RUNS, direct=(ROOT, ["cctl", "-b", master_url, "ping", "-d", hostname]),
                   sentinel=(ROOT, ["cctl", "-b", sentinel_url, "ping", "-d", hostname]))
    print_table(["cctl ping (median)", "master URL", "Sentinel URL", "Sentinel adds"],
                [["", *milliseconds(took["direct"], took["sentinel"])]])


class Lines:
    """A process's stdout lines with the time each arrived, collected by a thread."""

    def __init__(self, process):
        self.process = process
        self.lines = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.append((time.time(), line.decode(errors="replace").rstrip("\n")))


def watch_switch(port, moments):
    """``moments['promoted']``: when the Sentinel at ``port`` announces +switch-master."""
    import redis

    pubsub = redis.Redis(port=port).pubsub()
    pubsub.subscribe("+switch-master")
    for message in pubsub.listen():
        if message["type"] == "message":
            moments["promoted"] = time.time()
            return


def watch_subscription(port, moments, done):
    """``moments['subscribed']``: when a pattern subscription shows on the new master at ``port`` before the
    demotion: only cev-dump's can (celery's Receiver and the workers move when the old master drops them)."""
    while not done.is_set() and "demoted" not in moments:
        try:
            if command(port, "PUBSUB", "NUMPAT") > 0:
                moments["subscribed"] = time.time()
                return
        except (OSError, ConnectionError):
            pass
        time.sleep(0.02)


def watch_demotion(port, moments, done):
    """``moments['demoted']``: when the old master's ROLE stops saying master (it drops its clients then)."""
    while not done.is_set():
        try:
            if command(port, "ROLE")[0] != b"master":
                moments["demoted"] = time.time()
                return
        except (OSError, ConnectionError):
            pass
        time.sleep(0.02)


def send_without_pause(url, options, done, sent):
    """tests.app.add, one after another through Sentinel, as a client app would; ``sent``: (time, id)."""
    from celery import Celery

    app = Celery("bench-sender", broker=url, set_as_current=False)
    app.conf.broker_transport_options = options
    app.conf.task_send_sent_event = False
    try:
        while not done.is_set():
            sent.append((time.time(), app.send_task("tests.app.add", (1, 1)).id))
            time.sleep(0.05)
    finally:
        app.close()


def event_key(hostname, timestamp):
    """One event as both tools print it: its sender and its timestamp as celery's dumper formats it."""
    return hostname, str(datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc))


def cev_dump_events(lines):
    """``(arrived, record)`` of the event records (not gaps)."""
    parsed = [(arrived, json.loads(line)) for arrived, line in lines if line.startswith("{")]
    return [(arrived, record) for arrived, record in parsed if "hostname" in record and "timestamp" in record]


def celery_events(lines):
    """``(arrived, key)`` of ``celery events --dump`` lines: 'HOST [TIMESTAMP] what...'."""
    found = []
    for arrived, line in lines:
        hostname, _, rest = line.partition(" [")
        if rest and "]" in rest:
            found.append((arrived, (hostname, rest.split("]", 1)[0])))
    return found


def failover(cluster, options, worker):
    sentinel_url = f"{cluster.url()}?master_name={MASTER_NAME}"
    dump = Lines(subprocess.Popen([os.path.join(ROOT, "bin", "cev-dump"), "-b", sentinel_url, "-u"],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL))
    celery = Lines(subprocess.Popen([sys.executable, "-m", "celery", "-A", "tests.app", "events", "--dump"],
                                    cwd=ROOT, env=worker_env(cluster.url(), options), stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL))
    moments, done, sent = {}, threading.Event(), []
    try:
        wait_for(lambda: any(worker.hostname in line for _, line in dump.lines)
                 and any(worker.hostname in line for _, line in celery.lines), 60, "both readers hearing the worker")
        old_port = cluster.master_port()
        threading.Thread(target=watch_switch, args=(cluster.sentinel_ports[0], moments), daemon=True).start()
        threading.Thread(target=watch_demotion, args=(old_port, moments, done), daemon=True).start()
        new_port = cluster.replica.port if old_port == cluster.master.port else cluster.master.port
        threading.Thread(target=watch_subscription, args=(new_port, moments, done), daemon=True).start()
        threading.Thread(target=send_without_pause, args=(cluster.url(), options, done, sent), daemon=True).start()
        wait_for(lambda: len(sent) > 20, 30, "tasks flowing")
        cluster.ask(cluster.sentinel_ports[0], "SENTINEL", "FAILOVER", MASTER_NAME)
        wait_for(lambda: "promoted" in moments, 30, "the Sentinels' +switch-master")
        wait_for(lambda: time.time() > moments["promoted"] + RUN_ON_AFTER_FAILOVER, 60, "the run after it")
        done.set()
        wait_for(lambda: time.time() > moments["promoted"] + RUN_ON_AFTER_FAILOVER + 3, 60, "the last events")
    finally:
        done.set()
        for reader in (dump, celery):
            reader.process.kill()
            reader.process.wait()
    report_failover(moments, dump.lines, celery.lines, sent)


def first_after(arrivals, moment):
    return next((arrived for arrived in arrivals if moment and arrived > moment), None)


def report_failover(moments, dump_lines, celery_lines, sent):
    promoted, demoted = moments["promoted"], moments.get("demoted")
    since = lambda moment: f"{moment - promoted:+.2f} s" if moment else "never"  # noqa: E731
    dumped = cev_dump_events(dump_lines)
    dump_arrivals = [arrived for arrived, _ in dumped]
    celery_seen = celery_events(celery_lines)
    celery_arrivals = [arrived for arrived, _ in celery_seen]
    gaps = [(arrived, json.loads(line)) for arrived, line in dump_lines if '"celops-gap"' in line]
    print_table(["after SENTINEL FAILOVER (from +switch-master)", "seconds"], [
        ["cev-dump subscribed on the new master", since(moments.get("subscribed"))],
        ["the old master demoted: drops its clients, workers move", since(demoted)],
        ["cev-dump: first event after the promotion", since(first_after(dump_arrivals, promoted))],
        ["cev-dump: first event after the demotion", since(first_after(dump_arrivals, demoted))],
        ["cev-dump: celops-gap record", ", ".join(f"{since(arrived)} (dropped {gap['dropped']})"
                                                 for arrived, gap in gaps) or "none"],
        ["celery events --dump: first event after the promotion", since(first_after(celery_arrivals, promoted))],
        ["celery events --dump: first event after the demotion", since(first_after(celery_arrivals, demoted))],
    ])
    window_end = promoted + RUN_ON_AFTER_FAILOVER
    dump_keys = {event_key(record["hostname"], record["timestamp"]) for arrived, record in dumped
                 if promoted - 1 < record["timestamp"] < window_end}
    celery_keys = {key for _, key in celery_seen
                   if promoted - 1 < datetime.datetime.fromisoformat(key[1]).timestamp() < window_end}
    succeeded = {record.get("uuid") for _, record in dumped if record.get("type") == "task-succeeded"}
    succeeded |= {found for _, line in celery_lines if "task succeeded" in line
                  for found in re.findall(r"\(([0-9a-f-]{36})\)", line)}
    meanwhile = [task_id for moment, task_id in sent if promoted <= moment < (demoted or window_end)]
    later = [task_id for moment, task_id in sent if demoted and moment >= demoted]
    print()
    print_table([f"events stamped from 1 s before the promotion to +{RUN_ON_AFTER_FAILOVER:g} s", "count"], [
        ["seen by cev-dump", len(dump_keys)], ["seen by celery events --dump", len(celery_keys)],
        ["seen by celery events --dump only", len(celery_keys - dump_keys)],
        ["seen by cev-dump only", len(dump_keys - celery_keys)],
        ["tasks sent between promotion and demotion", len(meanwhile)],
        ["... that ran (a task-succeeded seen by either)", len(set(meanwhile) & succeeded)],
        ["tasks sent after the demotion", len(later)],
        ["... that ran", len(set(later) & succeeded)],
    ])


def main():
    with tempfile.TemporaryDirectory() as tmp:
        redis_server = RedisServer(os.path.join(tmp, "redis")).start()
        cluster = SentinelCluster(os.path.join(tmp, "sentinel")).start()
        options = cluster.transport_options()
        plain_worker = Worker(redis_server.url(0), name="plain", concurrency=1, pool="solo", logdir=tmp).start()
        worker = Worker(cluster.url(), name="sentinel", concurrency=1, pool="solo", transport_options=options,
                        logdir=tmp).start()
        try:
            print(f"before: {BEFORE}; after: {ROOT}; {RUNS} runs each, in turn; load {os.getloadavg()[0]:.2f}")
            startup(redis_server.url(0), plain_worker.hostname)
            print()
            sentinel_cost(cluster, worker.hostname)
            print()
            failover(cluster, options, worker)
            print(f"load {os.getloadavg()[0]:.2f}")
        finally:
            worker.stop()
            plain_worker.stop()
            cluster.stop()
            redis_server.stop()


if __name__ == "__main__":
    main()
