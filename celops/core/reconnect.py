"""Reconnect to the new master (Sentinel promotion) or the next host of a failover list, and say so.

The long-running readers (cev-dump, cev-cam --live, cq-len --watch) lose their
connection when a broker goes down or a Sentinel demotes the master. They call
``Reconnection.attempt`` with their own ``connect``: it retries with backoff,
each try going through ``Broker.connect`` (which asks the Sentinels afresh, or
walks the failover list), and ``gap`` then describes the hole in the stream,
with the host switch when there was one.

The Redis event reader does not wait to be dropped by a demoted master: it
subscribes on the new one as soon as the Sentinels name it and reads both
until the old one lets go (``RedisEventSource._hand_over`` in events.py), since
the workers go on publishing to the old one until then; ``switched`` is the
record of that move, a gap of no length.
"""

import time

from celops import records
from celops.core.exits import BrokerUnavailable

BACKOFF_FIRST = 0.1
BACKOFF_MAX = 5.0


def backoff():
    """0.1 s, doubling, at most BACKOFF_MAX."""
    delay = BACKOFF_FIRST
    while True:
        yield delay
        delay = min(delay * 2, BACKOFF_MAX)


class Reconnection:
    """One outage: when it began, which host was lost, and the record that tells of it once it is over."""

    def __init__(self, broker, reason, since=None):
        self.broker = broker
        self.reason = reason
        self.since = since or time.time()
        self.lost = broker.redacted_url

    def attempt(self, connect, stop, retry_on=(BrokerUnavailable,)):
        """``connect()`` until it succeeds; None once ``stop`` (a threading.Event) is set.

        The first try is immediate: after a Sentinel promotion the new master is already there.
        """
        for delay in backoff():
            try:
                return connect()
            except retry_on:
                if stop.wait(delay):
                    return None

    def gap(self, dropped=None):
        """The celops-gap record of this outage, ending now, with ``from``/``to`` when the host changed."""
        return records.gap(self.reason, self.since, time.time(), dropped,
                           switched=(self.lost, self.broker.redacted_url))

    def switched(self, dropped):
        """A celops-gap of no length: the stream moved to another host with both read meanwhile (a handover);
        ``dropped`` is 0 when the old host let go by itself, None when we gave up on it first."""
        now = time.time()
        return records.gap(self.reason, now, now, dropped, switched=(self.lost, self.broker.redacted_url))

    def warning(self):
        """The same in words, for commands whose stdout is not a record stream (cq-len --watch)."""
        moved = self.broker.redacted_url
        where = f"; now on {moved}" if moved != self.lost else ""
        return f"broker back after {time.time() - self.since:.1f} s{where}"
