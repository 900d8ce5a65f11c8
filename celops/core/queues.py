"""Which queues exist and what they hold, on either broker, shared by the cq-* commands."""

import re

from celops.core.exits import BrokerUnavailable, CelopsError

# celery's own plumbing: remote-control mailboxes, their reply queues, event receivers.
_INTERNAL = re.compile(r"\.pidbox$|^celeryev\.|\.reply\.celery\.pidbox$|^celery@.*\.celery\.pidbox$")

BINDING_PREFIX = "_kombu.binding."

# cq-len reads the Redis `unacked` hash only while it holds at most this many
# entries; past that, `unacked` is null rather than a slow, memory-hungry scan.
UNACKED_LIMIT = 10_000

# Counts the `unacked` hash's entries per routing key, inside Redis, so the
# messages never cross the wire and it rides in the same pipeline as the LLENs.
# Each value is kombu's JSON [message, exchange, routing_key].
_UNACKED_BY_ROUTING_KEY = """
local size = redis.call('HLEN', KEYS[1])
if size > tonumber(ARGV[1]) then return {size} end
local counts, out = {}, {size}
for _, value in ipairs(redis.call('HVALS', KEYS[1])) do
  local ok, entry = pcall(cjson.decode, value)
  if ok and type(entry) == 'table' and type(entry[3]) == 'string' then
    counts[entry[3]] = (counts[entry[3]] or 0) + 1
  end
end
for routing_key, count in pairs(counts) do
  out[#out + 1] = routing_key
  out[#out + 1] = count
end
return out
"""


def is_internal(name):
    return bool(_INTERNAL.search(name))


def add_queue_argument(parser, dest="queues", nargs="*", help="queue name"):
    """A positional queue name (or names) that completes live from ``cq-ls``."""
    from celops.core import cli

    return cli.complete_with(parser.add_argument(dest, nargs=nargs, type=cli.name("queue name"), metavar="QUEUE",
                                                 help=help), cli.QUEUE_NAMES)


def existing_queues(broker, timeout, management_url=None, include_internal=False, client=None):
    """Sorted names of the queues the broker knows, plus the app's (or celery's default).

    ``client`` is a ``celops.core.resp.Redis`` to reuse; without one a new one connects.
    """
    if broker.transport == "redis":
        names = _redis_queues(broker, client or redis_client(broker, timeout))
    else:
        from celops.core.rabbit import Management

        broker.kombu(timeout).release()  # the broker itself first: its errors name the broker URL
        names = {queue["name"] for queue in Management(broker, management_url, timeout).queues(["name"])}
    names.update(broker.queues or ["celery"])
    return sorted(name for name in names if include_internal or not is_internal(name))


def redis_client(broker, timeout):
    """A connected, pinged ``celops.core.resp.Redis`` (not redis-py: see that module for why)."""
    from celops.core.exits import UsageError
    from celops.core.resp import Redis

    if broker.transport != "redis":
        raise UsageError(f"this needs a Redis broker, not {broker.redacted_url}")
    return Redis.connect(broker, timeout)


def _redis_queues(broker, client):
    """Queue names from kombu's binding sets ``_kombu.binding.<exchange>``, found by SCAN."""
    pattern = broker.key(BINDING_PREFIX).replace("\\", "\\\\").replace("*", "\\*") + "*"
    binding_keys = list(client.scan(match=pattern))
    sep = broker.sep.encode()
    names = set()
    for members in client.pipeline(("SMEMBERS", key) for key in binding_keys):
        for member in members:
            names.add(member.split(sep)[-1].decode("utf-8", "replace"))
    return names


def unacked_key(broker):
    """The Redis hash of delivered-but-unacknowledged messages (transport option ``unacked_key``)."""
    return broker.key(broker.transport_options.get("unacked_key", "unacked"))


def redis_lengths(broker, client, queues, warn):
    """One record of counts per queue, from ONE pipelined round trip.

    The pipeline holds an LLEN per priority list of every queue and one
    server-side script counting the ``unacked`` hash by routing key (celery
    routes a task to a queue by a routing key equal to the queue's name).
    A missing list is an empty queue.
    """
    commands = [("LLEN", key) for queue in queues for _, key in broker.priority_keys(queue)]
    commands.append(("EVAL", _UNACKED_BY_ROUTING_KEY, 1, unacked_key(broker), UNACKED_LIMIT))
    *lengths, routes = client.pipeline(commands)
    unacked = _unacked_counts(routes, warn)
    lengths = iter(lengths)
    records = []
    for queue in queues:
        by_priority = {}
        for step, key in broker.priority_keys(queue):
            by_priority[str(step)] = checked_length(key, next(lengths))
        ready = sum(by_priority.values())
        records.append({"type": "queue", "queue": queue, "messages": ready, "ready": ready,
                        "unacked": None if unacked is None else unacked.get(queue, 0),
                        "consumers": None, "memory": None, "by_priority": by_priority, "source": "redis"})
    return records


def checked_length(key, reply):
    """An LLEN reply, or an error naming the key when it is not a list."""
    if isinstance(reply, Exception):
        raise CelopsError(f"key {key!r} is not a queue list: {reply}")
    return reply


def _unacked_counts(routes, warn):
    """``{routing_key: count}`` from the script's reply, or None when it could not count."""
    if isinstance(routes, Exception):
        warn(f"unacked not counted: {routes}")
        return None
    size, *pairs = routes
    if size > UNACKED_LIMIT:
        warn(f"unacked not counted: the unacked hash holds {size} entries (more than {UNACKED_LIMIT})")
        return None
    return {pairs[i].decode("utf-8", "replace"): pairs[i + 1] for i in range(0, len(pairs), 2)}


# RabbitMQ ------------------------------------------------------------------------

# What only the management API knows; the samples of unacked carry its timestamps (stats_age).
_MANAGEMENT_COLUMNS = ["name", "messages_unacknowledged", "messages_unacknowledged_details", "memory"]


def rabbit_lengths(broker, connection, queues, timeout, management_url, warn):
    """Counts of RabbitMQ queues: ready and consumers live, unacked and memory from the management API.

    A passive ``queue_declare`` is exact and current; the API's statistics
    are samples (every 5 s by default), so only what AMQP cannot tell comes
    from there, and ``stats_age`` says how old it is. ``queues`` None means
    every non-internal queue of the vhost (the API lists them; without it,
    the app's queues or celery's default). ``source`` says ``amqp`` or
    ``amqp+management``.
    """
    import time

    from celops.core.rabbit import Management

    try:
        described = {queue["name"]: queue for queue in Management(broker, management_url, timeout).queues(
            _MANAGEMENT_COLUMNS, lengths_age=10, lengths_incr=5)}
    except BrokerUnavailable as exc:
        warn(f"{exc}; counting by passive queue_declare only (no unacked or memory)")
        described = {}
    if queues is None:
        queues = sorted({*described, *(broker.queues or ["celery"])} - {n for n in described if is_internal(n)})
    now = time.time()
    return [_rabbit_record(connection, name, described.get(name), now, warn) for name in queues]


def _rabbit_record(connection, name, described, now, warn):
    ready, consumers = declare_passive(connection, name, warn)
    record = {"type": "queue", "queue": name, "messages": ready, "ready": ready, "unacked": None,
              "consumers": consumers, "memory": None, "by_priority": None, "source": "amqp", "stats_age": None}
    if described is not None and described.get("messages_unacknowledged") is not None:  # else too new for stats
        unacked = described["messages_unacknowledged"]
        record.update(messages=ready + unacked, unacked=unacked, memory=described.get("memory"),
                      source="amqp+management", stats_age=_stats_age(described, now))
    return record


def _stats_age(described, now):
    """Seconds since the API's newest sample of the queue (its own timestamps, ms), or None without samples."""
    samples = (described.get("messages_unacknowledged_details") or {}).get("samples") or []
    stamps = [sample["timestamp"] for sample in samples if isinstance(sample.get("timestamp"), (int, float))]
    return round(max(0.0, now - max(stamps) / 1000), 1) if stamps else None


def declare_passive(connection, name, warn):
    """``(ready, consumers)`` of a queue by passive declare; a missing queue counts 0."""
    return on_queue(connection, name, warn, (0, 0),
                    lambda channel: tuple(channel.queue_declare(queue=name, passive=True))[1:])


def on_queue(connection, name, warn, missing, operation):
    """``operation(channel)`` on a channel of its own (a 404 closes it); a missing queue warns, gives ``missing``."""
    channel = connection.channel()
    try:
        return operation(channel)
    except connection.channel_errors as exc:
        if getattr(exc, "code", None) != 404:
            raise
        warn(f"no such queue: {name!r}")
        return missing
    finally:
        if channel.is_open:
            channel.close()
