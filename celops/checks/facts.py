"""What ccheck judges, gathered from the broker and the workers in parallel, within one deadline.

This is the one module of ccheck that talks to the broker. It uses only the
public entry points of celops.core (the resolved broker, celops.core.queues,
broadcast.open_mailbox, events.EventSource with state.State, rabbit.Management),
so pointing it at another transport API is a few lines. Reads that only a Redis
broker offers and celops.core does not have yet are marked "moves into
RedisTransport".

Each gatherer runs in a daemon thread of its own: one that does not answer by
the deadline is left behind (its fact is Missing), never waited for.
"""

import threading
import time
from types import SimpleNamespace

from celops.core.exits import CelopsError

# The broadcasts of one mailbox session, each answered once by every worker.
BROADCASTS = ("ping", "stats", "conf", "registered", "active_queues", "active", "scheduled")
# kombu's Redis transport defaults (kombu/transport/redis.py).
DEFAULT_VISIBILITY_TIMEOUT = 3600.0
UNACKED_INDEX = "unacked_index"
REPLY_BINDING = "_kombu.binding.reply.celery.pidbox"
MAILBOX_BINDING = "_kombu.binding.celery.pidbox"
# How many of the oldest unacked deliveries are read (their ages only: one ZRANGE).
UNACKED_READ = 1000
# Reply keys looked at (SCAN MATCH *.reply.celery.pidbox*), at most.
REPLY_KEYS_READ = 1000
# Time kept back from -t for judging and writing the findings.
MARGIN = 0.3


class Missing(Exception):
    """A fact that could not be gathered: each check needing it becomes an "unknown" finding saying why."""


class Facts:
    """Named facts, or why each is missing. ``need(name)`` returns one or raises Missing."""

    def __init__(self, kind, expected=()):
        self.kind = kind  # the broker's: "redis" or "amqp"
        self.expected = expected
        self.values = {}
        self.missing = {}

    def need(self, name):
        if name in self.values:
            return self.values[name]
        raise Missing(self.missing.get(name, f"{name} not gathered"))

    def has(self, name):
        return name in self.values


def gather(broker, args, warn):
    """Every fact for ``args`` (ccheck's options), within ``args.timeout`` seconds from now.

    The broker itself is reached first: when it cannot be, nothing else is
    tried and every other fact is missing for that reason.
    """
    started = time.monotonic()
    deadline = started + args.timeout - MARGIN
    facts = Facts(broker.kind, tuple(args.destination or ()))
    try:
        facts.values["broker"] = _broker_facts(broker, args.timeout, warn)
    except CelopsError as exc:
        facts.missing["broker"] = str(exc)
        for name in ("replies", "queues", "layout", "events"):
            facts.missing[name] = "the broker cannot be reached"
        return facts
    gatherers = {
        "replies": lambda: _broadcast_replies(broker, args, facts.expected, deadline, warn),
        "queues": lambda: _queue_records(broker, args, warn),
        "layout": lambda: (_redis_layout if broker.kind == "redis" else _rabbit_layout)(broker, args),
        "events": lambda: _event_sample(broker, args, deadline),
    }
    threads = {name: _Gatherer(gather_one) for name, gather_one in gatherers.items()}
    for name, thread in threads.items():
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            facts.missing[name] = f"no answer within -t {args.timeout:g}s"
        elif thread.error is not None:
            facts.missing[name] = str(thread.error) if isinstance(thread.error, CelopsError) \
                else f"{type(thread.error).__name__}: {thread.error}"
        else:
            facts.values[name] = thread.value
    facts.values["gathered_in"] = time.monotonic() - started
    return facts


class _Gatherer(threading.Thread):
    """One gatherer in a daemon thread: its value or its exception, once joined."""

    def __init__(self, gather_one):
        super().__init__(daemon=True, name="ccheck-gather")
        self.gather_one = gather_one
        self.value = self.error = None
        self.start()

    def run(self):
        try:
            self.value = self.gather_one()
        except Exception as exc:  # handed to the main thread as a Missing fact
            self.error = exc


# The broker -----------------------------------------------------------------------

def _broker_facts(broker, timeout, warn):
    """Reachable, the round trip, and on Redis the memory use (INFO memory)."""
    if broker.kind != "redis":
        started = time.monotonic()
        broker.kombu(timeout).release()
        return {"latency": time.monotonic() - started, "latency_of": "connect", "used_memory": None,
                "maxmemory": None}
    from celops.core.queues import redis_client

    client = redis_client(broker, timeout, warn)  # also adopts the cluster's sep before the threads start
    try:
        started = time.monotonic()
        client.call("PING")
        latency = time.monotonic() - started
        # moves into RedisTransport: INFO memory
        info = _info_fields(client.call("INFO", "memory"))
    finally:
        client.close()
    return {"latency": latency, "latency_of": "PING", "used_memory": info.get("used_memory"),
            "maxmemory": info.get("maxmemory")}


def _info_fields(reply):
    """Redis INFO text as {field: int} for its numeric fields."""
    fields = {}
    for line in reply.decode("utf-8", "replace").splitlines():
        key, sep, value = line.partition(":")
        if sep and value.strip().isdigit():
            fields[key] = int(value)
    return fields


# The workers ----------------------------------------------------------------------

def _broadcast_replies(broker, args, expected, deadline, warn):
    """{command: {hostname: [reply, ...]}} of one mailbox session; two replies under one name are kept.

    The session waits ``--reply-wait`` seconds, or until every worker of ``-d``
    has answered every command.
    """
    from celops.core.broadcast import open_mailbox

    window = min(time.monotonic() + args.reply_wait, deadline)
    replies = {command: {} for command in BROADCASTS}
    with open_mailbox(broker, args.timeout, warn) as mailbox:
        tickets = {mailbox.request(command, {}, None, expires_in=args.reply_wait): command
                   for command in BROADCASTS}
        for ticket, hostname, reply in mailbox.replies(window):
            replies[tickets[ticket]].setdefault(hostname, []).append(reply)
            if expected and all(set(expected) <= set(by_worker) for by_worker in replies.values()):
                break
    return replies


# The queues -----------------------------------------------------------------------

def _queue_records(broker, args, warn):
    """cq-len's records of every queue (the transport's measurer), with, on Redis, the eta of each queue's
    oldest message."""
    from celops.core.queues import redis_client

    measure = broker.transport.measurer(None, args.timeout, args.management_url, lambda _: None)
    records = [item for item in measure() if isinstance(item, dict)]
    if broker.kind == "redis":
        client = redis_client(broker, args.timeout, warn)
        try:
            _add_oldest_eta(broker, client, records)
        finally:
            client.close()
    return records


def _add_oldest_eta(broker, client, records):
    """moves into RedisTransport: the eta header of each queue's oldest message (kombu pops from the right).

    Only the envelope's headers are read; celery's messages carry no sent
    time, so a message without an eta has no age ("oldest_eta": None).
    """
    import json

    waiting = [record for record in records if record["messages"]]
    heads = client.pipeline(("LINDEX", broker.priority_keys(record["queue"])[0][1], -1) for record in waiting)
    for record, head in zip(waiting, heads):
        try:
            record["oldest_eta"] = json.loads(head).get("headers", {}).get("eta")
        except (TypeError, ValueError, AttributeError):
            record["oldest_eta"] = None


def _redis_layout(broker, args):
    """moves into RedisTransport: the pidbox and reply bindings, reply keys, and the oldest unacked deliveries.

    ``reply_keys`` are {key: (length, seconds idle)} of the lists named
    ``*.reply.celery.pidbox`` (and their priority lists); ``unacked_delivered``
    the delivery times (epoch seconds, oldest first) from ``unacked_index``.
    """
    from celops.core.queues import redis_client

    client = redis_client(broker, args.timeout)
    try:
        reply_binding, mailbox_binding, delivered = client.checked(
            ("SMEMBERS", broker.key(REPLY_BINDING)), ("SMEMBERS", broker.key(MAILBOX_BINDING)),
            ("ZRANGE", broker.key(broker.transport_options.get("unacked_index_key", UNACKED_INDEX)),
             0, UNACKED_READ - 1, "WITHSCORES"))
        keys = []
        for key in client.scan(match=broker.key("*.reply.celery.pidbox*")):
            keys.append(key)
            if len(keys) >= REPLY_KEYS_READ:
                break
        measured = client.pipeline(command for key in keys for command in (("LLEN", key), ("OBJECT", "IDLETIME", key)))
    finally:
        client.close()
    reply_keys = {}
    for index, key in enumerate(keys):
        length, idle = measured[2 * index:2 * index + 2]
        if isinstance(length, int):
            reply_keys[key.decode("utf-8", "replace")] = (length, idle if isinstance(idle, int) else None)
    return {"sep": broker.sep, "prefix": broker.key(""), "db": broker.db,
            "reply_bindings": sorted(reply_binding), "mailbox_bindings": sorted(mailbox_binding),
            "unacked_delivered": [float(score) for score in delivered[1::2]],
            "reply_keys": reply_keys, "visibility_timeout": broker.transport_options.get("visibility_timeout")}


def _rabbit_layout(broker, args):
    """The vhost's pidbox and reply queues with their consumers, from the management API."""
    from celops.core.rabbit import Management

    queues = Management(broker, args.management_url, args.timeout).queues(["name", "consumers", "messages"])
    return {"pidbox_queues": [queue for queue in queues if queue["name"].endswith(".pidbox")]}


# The tasks ------------------------------------------------------------------------

def _event_sample(broker, args, deadline):
    """``--sample`` seconds of events into a State, with every heartbeat as it came, after waking the workers."""
    from celops.core.events import DEFAULT_BUFFER_MB, EventSource
    from celops.core.state import State

    options = SimpleNamespace(timeout=args.timeout, buffer=DEFAULT_BUFFER_MB, queue=None, ttl=None, expires=None,
                              wakeup=True, enable_events=False)
    source = EventSource.from_args(broker, options)
    state, heartbeats, task_senders = State(), [], set()
    try:
        source.start()
        end = min(time.monotonic() + args.sample, deadline)
        while (remaining := end - time.monotonic()) > 0:
            for record in source.get_batch(remaining):
                state.event(record)
                kind = record.get("type")
                if kind == "worker-heartbeat":
                    heartbeats.append(record)
                elif isinstance(kind, str) and kind.startswith("task-") and kind != "task-sent":
                    task_senders.add(record.get("hostname"))
    finally:
        source.close()
    return {"state": state, "heartbeats": heartbeats, "task_senders": task_senders, "seconds": args.sample}
