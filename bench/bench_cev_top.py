#!/usr/bin/env python3
"""cev-top against `celery events` (its curses monitor), both drawing in tmux, on a private Redis.

Each tool runs live in a 200x50 tmux window with TERM=xterm-256color, so it
really draws while it ingests. bench_cev_dump.py's publisher sends 300k
synthetic task events (default) at each rate; the count each tool shows
(cev-top's header "events N", celery's "events: N") is read with
capture-pane until it stops moving. Reported:

1. per rate, events shown against events sent, gaps shown, and events/s
   ingested (shown count over the time from the first publish to the last
   change of the count, which includes up to one repaint of lag);
2. cev-top's CPU (share of one core) and RSS: idle for 10 s, while 10k
   events/s arrive for 10 s, and idle again with its task table full
   (psutil on the process).

Floors (from issue 16): no event lost at 50k events/s while drawing; idle
CPU at most 2% of a core. Timings are printed, never asserted.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.bench_cev_dump import publish, redis_url, synthetic_events  # noqa: E402
from bench.common import print_table  # noqa: E402
from tests.support import RedisServer, pattern_subscribers, wait_for  # noqa: E402

TOOLS = {
    "cev-top": (lambda url: [os.path.join(ROOT, "bin", "cev-top"), "-b", url], re.compile(r"events (\d+) ")),
    "celery events": (lambda url: [sys.executable, "-m", "celery", "-b", url, "events"],
                      re.compile(r"events: (\d+)")),
}


class Screen:
    """One tool drawing in a tmux window of its own."""

    def __init__(self, tool, url):
        self.socket = f"bench-top-{uuid.uuid4().hex[:8]}"
        command, self.pattern = TOOLS[tool]
        self.tmux("new-session", "-d", "-x", "200", "-y", "50", "env", "TERM=xterm-256color", "LANG=C.UTF-8",
                  *command(url))
        self.pid = int(self.tmux("display", "-p", "#{pane_pid}").stdout.strip())

    def tmux(self, *args):
        return subprocess.run(["tmux", "-L", self.socket, "-f", os.devnull, *args], capture_output=True, text=True)

    def shown(self):
        match = self.pattern.search(self.tmux("capture-pane", "-p").stdout)
        return int(match.group(1)) if match else None

    def settle(self, expected, started, quiet=3.0, limit=300):
        """``(events shown, seconds from ``started`` to the last change)`` once the count stops moving."""
        last, changed = None, time.monotonic()
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            count = self.shown()
            if count != last:
                last, changed = count, time.monotonic()
                if count == expected:
                    break
            elif time.monotonic() - changed > quiet:
                break
            time.sleep(0.02)
        return last or 0, changed - started

    def process(self):
        import psutil

        process = psutil.Process(self.pid)
        pythons = [process] + process.children(recursive=True)
        return next(p for p in pythons if "python" in p.name().lower() or p.name().startswith("celery"))

    def close(self):
        self.tmux("kill-server")


def subscribed(url, before, tool):
    """Until more than ``before`` clients hold a pattern subscription: ``tool`` reads events."""
    wait_for(lambda: pattern_subscribers(url) > before, 30, f"{tool}'s subscription")


def usage(process, seconds, during=None):
    """``(CPU share of one core, RSS MB)`` of ``process`` over ``seconds`` (``during`` runs meanwhile)."""
    before = process.cpu_times()
    started = time.monotonic()
    if during is not None:
        during()
    remaining = seconds - (time.monotonic() - started)
    if remaining > 0:
        time.sleep(remaining)
    after = process.cpu_times()
    elapsed = time.monotonic() - started
    cpu = (after.user + after.system - before.user - before.system) / elapsed
    return cpu, process.memory_info().rss / 2**20


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--rates", default="50000,100000", help="events/s, comma-separated")
    args = parser.parse_args(argv)
    rates = [int(rate) for rate in args.rates.split(",")]
    with tempfile.TemporaryDirectory() as workdir:
        server = RedisServer(workdir).start()
        try:
            url = redis_url(server.port)
            commands = synthetic_events(args.events)[:args.events]
            rows = []
            for rate in rates:
                for tool in TOOLS:
                    before = pattern_subscribers(url)
                    screen = Screen(tool, url)
                    try:
                        subscribed(url, before, tool)
                        started = time.monotonic()
                        publish(server.port, commands, rate)
                        shown, seconds = screen.settle(len(commands), started)
                        rows.append([f"{rate}/s", tool, len(commands), shown, len(commands) - shown,
                                     f"{shown / seconds:,.0f}"])
                        print(f"  {rows[-1]}", flush=True)
                    finally:
                        screen.close()
                        wait_for(lambda: pattern_subscribers(url) == before, 30, f"{tool} gone")
            print()
            print_table(["rate", "tool", "sent", "shown", "lost", "ingested/s while drawing"], rows)
            before = pattern_subscribers(url)
            screen = Screen("cev-top", url)
            try:
                subscribed(url, before, "cev-top")
                process = screen.process()
                idle_cpu, idle_rss = usage(process, 10.0)
                steady = synthetic_events(100_000)[:100_000]
                busy_cpu, busy_rss = usage(process, 10.0, lambda: publish(server.port, steady, 10_000))
                screen.settle(len(steady), time.monotonic())
                full_cpu, full_rss = usage(process, 10.0)
            finally:
                screen.close()
            print()
            print_table(["cev-top", "CPU (share of one core)", "RSS MB"],
                        [["idle, 10 s", f"{idle_cpu:.1%}", f"{idle_rss:.0f}"],
                         ["10k events/s, 10 s", f"{busy_cpu:.1%}", f"{busy_rss:.0f}"],
                         ["idle after, 10k tasks in the table, 10 s", f"{full_cpu:.1%}", f"{full_rss:.0f}"]])
        finally:
            server.stop()


if __name__ == "__main__":
    main()
