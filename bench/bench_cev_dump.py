#!/usr/bin/env python3
"""cev-dump against `celery events --dump` and a plain celery Receiver, on a private Redis.

300k synthetic task events (received/started/succeeded lifecycles, kombu
envelopes with base64 bodies exactly as celery publishes them) are
pre-encoded as RESP PUBLISH commands and sent at a controlled rate on a raw
socket (CLIENT REPLY OFF), like `redis-cli --pipe`. Reported:

1. events in vs out at 25k/50k/100k/200k events/s, per tool (Redis default
   pub/sub output-buffer limits: 32 MB hard, 8 MB for 60 s);
2. a full-speed burst of all events: how many arrive, and cev-dump's gap
   records (also with --buffer 8, too small on purpose, so that some are lost);
3. drain throughput: the backlog of a full-speed burst worked off with the
   output-buffer limit lifted, to /dev/null for cev-dump (--limit; the clock
   starts with the publishing, three runs, median) and to a tmpfs file for `celery events --dump` (its last write time ends the clock;
   30k events only, as it drains a few thousand a second);
4. peak RSS (VmHWM, sampled every 10 ms from subscribing on, so that an
   anchor cut off early is still measured) of each tool absorbing the burst.

Anchors get fewer events with --anchor-events (default: as many as cev-dump)
when the full run is too slow; the table says so.
"""

import argparse
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.support import RedisServer, kombu_event_envelope, pattern_subscribers  # noqa: E402

PY = sys.executable
HOST = "bench-worker@celops"
DRAIN_REPEATS = 3  # the floor is absolute: show the spread, not one lucky run
DRAIN_ANCHOR_EVENTS = 30_000  # celery events --dump drains a few thousand a second: 300k would take minutes
RECEIVER = r"""
import sys
from celery import Celery
app = Celery(broker=sys.argv[1], set_as_current=False)
out = sys.stdout
def on_event(event):
    out.write(".\n")
try:
    with app.connection() as conn:
        app.events.Receiver(conn, handlers={"*": on_event}).capture(limit=None, timeout=None, wakeup=False)
except KeyboardInterrupt:
    pass
out.flush()
"""


def synthetic_events(count):
    """``count`` RESP PUBLISH commands: task lifecycles of three events each."""
    commands = []
    clock = 0
    now = time.time()
    for task in range(count // 3 + 1):
        task_id = str(uuid.uuid4())
        common = {"hostname": HOST, "utcoffset": 0, "pid": 4242, "uuid": task_id}
        lifecycle = [
            ("task-received", {"name": "proj.tasks.add", "args": "(2, 2)", "kwargs": "{}", "root_id": task_id,
                               "parent_id": None, "retries": 0, "eta": None, "expires": None}),
            ("task-started", {}),
            ("task-succeeded", {"result": "4", "runtime": 0.0012}),
        ]
        for kind, fields in lifecycle:
            clock += 1
            event = dict(common, clock=clock, timestamp=now + clock * 1e-5, type=kind, **fields)
            channel = b"/0.celeryev/" + kind.replace("-", ".").encode()
            payload = kombu_event_envelope(event, kind.replace("-", ".")).encode()
            commands.append(b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n"
                            % (len(channel), channel, len(payload), payload))
            if len(commands) == count:
                return commands
    return commands


def publish(port, commands, rate=None):
    """Send ``commands`` at ``rate`` per second (None: as fast as possible); returns seconds taken."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"CLIENT REPLY OFF\r\n")
        start = time.monotonic()
        if rate is None:
            for offset in range(0, len(commands), 2000):
                sock.sendall(b"".join(commands[offset:offset + 2000]))
        else:
            sent = 0
            while sent < len(commands):
                due = min(len(commands), int((time.monotonic() - start) * rate) + 1)
                if due > sent:
                    sock.sendall(b"".join(commands[sent:due]))
                    sent = due
                else:
                    time.sleep(0.002)
        elapsed = time.monotonic() - start
        sock.sendall(b"CLIENT REPLY ON\r\nPING\r\n")
        sock.recv(64)
    return elapsed


def redis_url(port):
    return f"redis://127.0.0.1:{port}/0"


def wait_subscribed(port, before, process, what):
    """Until more than ``before`` clients hold a pattern subscription, i.e. ``process`` reads events."""
    deadline = time.monotonic() + 30
    while pattern_subscribers(redis_url(port)) <= before:
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError(f"{what} did not subscribe")
        time.sleep(0.02)


@contextlib.contextmanager
def output_buffer_limit_lifted(port):
    """Redis' pub/sub output-buffer limit off for a while, then back as it was."""
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    saved = client.config_get("client-output-buffer-limit")["client-output-buffer-limit"]
    client.config_set("client-output-buffer-limit", "pubsub 0 0 0")
    try:
        yield
    finally:
        client.config_set("client-output-buffer-limit", saved)
        client.close()


TOOLS = {
    "cev-dump": lambda url: [os.path.join(ROOT, "bin", "cev-dump"), "-b", url],
    "celery events --dump": lambda url: [PY, "-m", "celery", "-b", url, "events", "--dump"],
    "celery Receiver": lambda url: [PY, "-c", RECEIVER, url],
}


def count_events(tool, data):
    """``(events, gap records)`` in a tool's output."""
    if tool == "cev-dump":
        gaps = data.count(b'"type":"celops-gap"')
        return data.count(b"\n") - gaps - data.count(b'"type":"error"'), gaps
    if tool == "celery events --dump":
        return data.count(HOST.encode() + b" ["), 0
    return data.count(b"\n"), 0


def peak_rss_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


class Run:
    """One tool subscribed to the private Redis, its output in a file, until it has settled."""

    def __init__(self, tool, port, out_dir, extra=()):
        self.tool = tool
        self.port = port
        self.out_path = os.path.join(out_dir, f"{tool.replace(' ', '_')}.out")
        self.err_path = self.out_path + ".err"
        before = pattern_subscribers(redis_url(port))
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.process = subprocess.Popen(TOOLS[tool](redis_url(port)) + list(extra), stdout=out, stderr=err,
                                            cwd=ROOT, start_new_session=True)
        wait_subscribed(port, before, self.process, f"{tool} (see {self.err_path})")
        self.rss = 0
        threading.Thread(target=self._sample_rss, daemon=True).start()

    def _sample_rss(self):
        while self.process.returncode is None:
            self.rss = max(self.rss, peak_rss_mb(self.process.pid) or 0)
            time.sleep(0.01)

    def settle(self, quiet=2.0, limit=600):
        """Wait until the output stops growing for ``quiet`` s; returns the time of the last write."""
        last_size, last_change = -1, time.monotonic()
        deadline = time.monotonic() + limit
        while self.process.poll() is None and time.monotonic() < deadline:
            size = os.path.getsize(self.out_path)
            if size != last_size:
                last_size, last_change = size, time.monotonic()
            elif time.monotonic() - last_change > quiet:
                break
            time.sleep(0.05)
        return os.stat(self.out_path).st_mtime

    def stop(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        with open(self.out_path, "rb") as stream:
            data = stream.read()
        with open(self.err_path, "rb") as stream:
            err = stream.read().decode("utf-8", "replace")
        self.crashed = "Traceback" in err or "Error" in err
        self.reconnects = data.count(b"Connection lost")  # celery events --dump says so on stdout
        return count_events(self.tool, data)


def rate_runs(port, commands, anchor_commands, rates, out_dir):
    rows = []
    for rate in rates:
        for tool in TOOLS:
            sent = commands if tool == "cev-dump" else anchor_commands
            run = Run(tool, port, out_dir)
            elapsed = publish(port, sent, rate)
            run.settle()
            events, gaps = run.stop()
            rows.append((rate, tool, len(sent), events, gaps, len(sent) / elapsed, run.crashed or run.reconnects))
            print(f"  {rate:>7}/s {tool:<22} in {len(sent):>7} out {events:>7} gaps {gaps}"
                  f"{' (cut off: error on stderr)' if run.crashed else ''}"
                  f"{f' (cut off: reconnected {run.reconnects}x)' if run.reconnects else ''}", flush=True)
    return rows


SMALL_BUFFER = ["--buffer", "8"]  # MB: too small for the burst, to show that the loss is reported


def burst(port, commands, anchor_commands, out_dir):
    rows = []
    for tool, extra in [(tool, ()) for tool in TOOLS] + [("cev-dump", SMALL_BUFFER)]:
        sent = commands if tool == "cev-dump" else anchor_commands
        run = Run(tool, port, out_dir, extra)
        tool = " ".join([tool, *extra])
        elapsed = publish(port, sent)
        run.settle()
        events, gaps = run.stop()
        rows.append((tool, len(sent), events, gaps, len(sent) / elapsed, run.rss, run.crashed or run.reconnects))
        print(f"  burst {tool:<22} in {len(sent):>7} out {events:>7} gaps {gaps} peak RSS {run.rss:.0f} MB",
              flush=True)
    return rows


def drain(port, commands, anchor_commands):
    """Backlog worked off per second, with Redis' pub/sub output-buffer limit lifted."""
    with output_buffer_limit_lifted(port):
        ours = []
        for _ in range(DRAIN_REPEATS):
            before = pattern_subscribers(redis_url(port))
            process = subprocess.Popen([*TOOLS["cev-dump"](redis_url(port)), "--limit", str(len(commands))],
                                       stdout=subprocess.DEVNULL, cwd=ROOT)
            wait_subscribed(port, before, process, "cev-dump")
            start = time.monotonic()
            publish(port, commands)
            process.wait(600)
            ours.append(len(commands) / (time.monotonic() - start))

        with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as tmpfs:
            run = Run("celery events --dump", port, tmpfs)
            start_wall = time.time()
            publish(port, anchor_commands[:DRAIN_ANCHOR_EVENTS])
            end_wall = run.settle()
            events, _ = run.stop()
    return ours, events / (end_wall - start_wall), events


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--anchor-events", type=int, default=None,
                        help="events sent to the anchors (default: --events)")
    parser.add_argument("--rates", default="25000,50000,100000,200000")
    args = parser.parse_args(argv)
    rates = [int(rate) for rate in args.rates.split(",")]
    print(f"encoding {args.events} synthetic events...", flush=True)
    commands = synthetic_events(args.events)
    anchor_commands = commands[:args.anchor_events or args.events]
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(os.path.join(tmp, "redis")).start()
        try:
            print("1. sustained rates", flush=True)
            rates_rows = rate_runs(server.port, commands, anchor_commands, rates, tmp)
            print("2. full-speed burst", flush=True)
            burst_rows = burst(server.port, commands, anchor_commands, tmp)
            print("3. drain throughput", flush=True)
            ours, theirs, drained = drain(server.port, commands, anchor_commands)
        finally:
            server.stop()
    report(args, rates, rates_rows, burst_rows, ours, theirs, drained, len(anchor_commands))
    return 0


def report(args, rates, rates_rows, burst_rows, ours, theirs, drained, anchor_events):
    print()
    print(f"1. Zero loss at a sustained rate (events in -> out; cev-dump gets {args.events}, "
          f"anchors {anchor_events})")
    tools = list(TOOLS)
    print(f"{'target rate':>12} {'achieved':>9} " + " ".join(f"{tool:>28}" for tool in tools))
    for rate in rates:
        cells, achieved = [], 0
        for row in rates_rows:
            if row[0] == rate:
                _, tool, sent, events, gaps, speed, crashed = row
                achieved = achieved or speed
                mark = "OK" if events == sent else ("CUT" if crashed else "LOSS")
                mark += f" gap{gaps}" if gaps else ""
                cells.append(f"{events:>7}/{sent:<7} {mark:>12}")
        print(f"{rate:>11}/s {achieved:>8.0f}/s " + " ".join(f"{cell:>28}" for cell in cells))
    for tool in tools:
        clean = [row[0] for row in rates_rows if row[1] == tool and row[3] == row[2]]
        print(f"   largest zero-loss rate, {tool}: {max(clean) if clean else 'none'}")
    print()
    print("2. Full-speed burst (events in -> out, gap records, peak RSS)")
    for tool, sent, events, gaps, speed, rss, crashed in burst_rows:
        print(f"   {tool:<22} {events:>7}/{sent:<7} at {speed:>8.0f}/s published; gap records {gaps}; "
              f"peak RSS {rss or 0:.0f} MB{'; cut off' if crashed else ''}")
    print()
    print("3. Drain throughput (events/s)")
    runs = " / ".join(f"{speed:,.0f}" for speed in ours)
    median = statistics.median(ours)
    print(f"   cev-dump > /dev/null: median {median:,.0f}/s (runs {runs});  celery events --dump > tmpfs: "
          f"{theirs:,.0f}/s ({drained} events);  ratio {median / theirs if theirs else float('inf'):.1f}x")
    print()
    rss = {row[0]: row[5] for row in burst_rows if row[0] in TOOLS}
    print("4. Peak RSS while absorbing the burst: " +
          ", ".join(f"{tool} {value or 0:.0f} MB" for tool, value in rss.items()))


if __name__ == "__main__":
    sys.exit(main())
