"""Which queues exist and what they hold, on either broker, shared by the cq-* commands."""

import re

from celops.core.exits import BrokerUnavailable, CelopsError, DataError, ExitStatus, NoPermission

# celery's own plumbing: remote-control mailboxes, their reply queues, event receivers.
_INTERNAL = re.compile(r"\.pidbox$|^celeryev\.|\.reply\.celery\.pidbox$|^celery@.*\.celery\.pidbox$")

# cq-len counts the Redis `unacked` hash by routing key only while it holds at
# most this many entries; past that, `unacked` is null rather than a long walk.
UNACKED_LIMIT = 100_000
# Entries the counting script reads per call (HSCAN COUNT): each call is a
# short, bounded piece of server time, however big the hash.
UNACKED_CHUNK = 1000

# Counts one HSCAN chunk of the `unacked` hash per routing key, inside Redis,
# so the messages never cross the wire; the first chunk rides in the same
# pipeline as the LLENs. Each value is kombu's JSON [message, exchange, routing_key].
# Returns {next cursor, HLEN, routing_key, count, ...}.
_UNACKED_BY_ROUTING_KEY = """
local size = redis.call('HLEN', KEYS[1])
if size > tonumber(ARGV[2]) then return {'0', size} end
local scanned = redis.call('HSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[3])
local counts, out = {}, {scanned[1], size}
local entries = scanned[2]
for i = 2, #entries, 2 do
  local ok, entry = pcall(cjson.decode, entries[i])
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


def add_queues_options(parser, help, exclude=False):
    """-Q QUEUE[,QUEUE...] (repeatable; an empty name is a usage error, never "all"), and with ``exclude``
    -X for the queues to leave out; both complete live from ``cq-ls``."""
    from celops.core import cli

    names = cli.name_list("queue name")
    cli.complete_with(parser.add_argument("-Q", "--queues", action="extend", type=names, metavar="QUEUE[,QUEUE...]",
                                          help=help), cli.QUEUE_NAMES)
    if exclude:
        cli.complete_with(parser.add_argument(
            "-X", "--exclude-queues", action="extend", type=names, default=[], metavar="QUEUE[,QUEUE...]",
            help="but not these (repeatable; comma-separated)"), cli.QUEUE_NAMES)


# What one run found wrong, queue by queue -----------------------------------------

class UnknownQueue(CelopsError):
    """A queue the broker does not know: on Redis no binding names it and none of its lists exists;
    on RabbitMQ a passive declare says 404. The job's own negative result (exit 1), never a zero count."""

    status = ExitStatus.FAILURE

    def __init__(self, broker_url, name):
        from celops.core.redact import redact_url

        why = "no binding and no list" if broker_url.startswith("redis") else "no such queue"
        super().__init__(f"unknown queue {name!r} ({why} on {redact_url(broker_url)})")
        self.queue = name


class BadKey(DataError):
    """A key that bears a queue's name but is not a list: the queue is reported, never measured or removed."""

    def __init__(self, queue, key, reason):
        super().__init__(f"queue {queue!r}: key {key!r} {reason}")
        self.queue = queue
        self.key = key
        self.reason = reason


class QueueReport:
    """The one way cq-len, cq-purge and cq-peek report queues they could not handle, and the exit status.

    An unknown queue is a warning (``PROG: unknown queue 'x' (...)``) and no
    record: exit 1. A bad key is an error record on stdout, when stdout
    carries records, and a stderr line: exit 65. The other queues go on.
    Across the batches of a long run (cq-len --watch) each queue's problem is
    said on stderr once, and what is kept grows with the queues, not the run.
    """

    def __init__(self, ctx, records_on_stdout=True):
        self.ctx = ctx
        self.records_on_stdout = records_on_stdout
        self.unknown = set()
        self.bad = set()

    def add(self, problem):
        """Report an UnknownQueue or a BadKey."""
        if isinstance(problem, BadKey):
            if self.records_on_stdout:
                self.ctx.out.write({"type": "error", "queue": problem.queue, "key": problem.key,
                                    "error": problem.reason})
            if problem.queue not in self.bad:
                self.ctx.error(str(problem))
            self.bad.add(problem.queue)
        else:
            if problem.queue not in self.unknown:
                self.ctx.warn(str(problem))
            self.unknown.add(problem.queue)

    def sorted_out(self, items):
        """The records among ``items``; each UnknownQueue or BadKey among them is reported instead."""
        records = []
        for item in items:
            if isinstance(item, (UnknownQueue, BadKey)):
                self.add(item)
            else:
                records.append(item)
        return records

    def status(self):
        if self.bad:
            return ExitStatus.DATA_ERROR
        return ExitStatus.FAILURE if self.unknown else ExitStatus.OK


# Redis ---------------------------------------------------------------------------

def existing_queues(broker, timeout, management_url=None, include_internal=False, client=None, warn=None):
    """Sorted names of the queues that exist on the broker (never ones it does not know); see the transports."""
    return broker.transport.existing_queues(timeout, management_url, include_internal, client, warn)


def redis_client(broker, timeout, warn=None):
    """A connected, pinged ``celops.core.resp.Redis`` (not redis-py: see that module for why).

    Without -A the broker first takes the cluster's separator and priority
    steps from what is on the server (``adopt_cluster_layout``); ``warn``
    says what was inferred.
    """
    from celops.core.exits import UsageError
    from celops.core.resp import Redis

    if broker.kind != "redis":
        raise UsageError(f"this needs a Redis broker, not {broker.redacted_url}")
    from celops.core.redis_layout import adopt_cluster_layout

    client = Redis.connect(broker, timeout)
    adopt_cluster_layout(broker, client, warn)
    return client


def redis_queue_names(broker, client):
    """The queue names kombu's binding sets hold (each member: routing key, pattern, queue, joined by sep)."""
    from celops.core.redis_layout import binding_members

    sep = broker.sep.encode()
    return {member.split(sep)[-1].decode("utf-8", "replace") for member in binding_members(broker, client)}


def unacked_key(broker):
    """The Redis hash of delivered-but-unacknowledged messages (transport option ``unacked_key``)."""
    return broker.key(broker.transport_options.get("unacked_key", "unacked"))


def redis_lengths(broker, client, queues, warn):
    """Per queue, a record of counts, an UnknownQueue or a BadKey (see QueueReport).

    One pipelined round trip holds an LLEN per priority list of every queue
    and the first chunk of the script counting the ``unacked`` hash by routing
    key (celery routes a task to a queue by a routing key equal to the
    queue's name). A missing list is an empty queue; a queue all of whose
    lists are missing is unknown unless a binding names it.
    """
    commands = [("LLEN", key) for queue in queues for _, key in broker.priority_keys(queue)]
    commands.append(_unacked_chunk(broker, "0"))
    *lengths, routes = client.pipeline(commands)
    unacked = _unacked_counts(broker, client, routes, warn)
    lengths = iter(lengths)
    records = []
    for queue in queues:
        by_priority = {str(step): length_or_problem(client, queue, key, next(lengths))
                       for step, key in broker.priority_keys(queue)}
        records.append(_queue_record(queue, by_priority, unacked))
    return known_only(broker, client, records, lambda record: record["messages"])


def _queue_record(queue, by_priority, unacked):
    problem = next((value for value in by_priority.values() if isinstance(value, BadKey)), None)
    if problem:
        return problem
    ready = sum(by_priority.values())
    return {"type": "queue", "queue": queue, "messages": ready, "ready": ready,
            "unacked": None if unacked is None else unacked.get(queue, 0),
            "consumers": None, "memory": None, "by_priority": by_priority, "source": "redis"}


def known_only(broker, client, items, count):
    """``items`` with each record whose ``count(record)`` is 0 and that no binding names made an UnknownQueue.

    The binding sets are read only when some queue is empty.
    """
    names = None
    checked = []
    for item in items:
        if isinstance(item, dict) and not count(item):
            names = redis_queue_names(broker, client) if names is None else names
            if item["queue"] not in names:
                item = UnknownQueue(broker.url, item["queue"])
        checked.append(item)
    return checked


def length_or_problem(client, queue, key, reply):
    """An LLEN reply, or a BadKey saying what the key holds when it is not a list."""
    if isinstance(reply, NoPermission):
        raise reply
    if isinstance(reply, Exception):
        kind = client.call("TYPE", key).decode()
        return BadKey(queue, key, f"holds a {kind}, not a list" if "WRONGTYPE" in str(reply) else str(reply))
    return reply


def _unacked_chunk(broker, cursor):
    return ("EVAL", _UNACKED_BY_ROUTING_KEY, 1, unacked_key(broker), cursor, UNACKED_LIMIT, UNACKED_CHUNK)


def _unacked_counts(broker, client, routes, warn):
    """``{routing_key: count}`` from the script's chunks (the first given), or None when it could not count."""
    counts = {}
    while True:
        if isinstance(routes, Exception):
            warn(f"unacked not counted: {routes}")
            return None
        cursor, size, *pairs = routes
        if size > UNACKED_LIMIT:
            warn(f"unacked not counted: the unacked hash holds {size} entries (more than {UNACKED_LIMIT})")
            return None
        for i in range(0, len(pairs), 2):
            routing_key = pairs[i].decode("utf-8", "replace")
            counts[routing_key] = counts.get(routing_key, 0) + pairs[i + 1]
        if cursor == b"0":
            return counts
        (routes,) = client.pipeline([_unacked_chunk(broker, cursor)])


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
        queues = sorted({*described, *(broker.queues or [])} - {n for n in described if is_internal(n)})
    now = time.time()
    return [_rabbit_record(connection, name, described.get(name), now) for name in queues]


def _rabbit_record(connection, name, described, now):
    """Ready and consumers live (passive declare); unacked and memory from the API's samples, with their age.

    A queue the broker does not know comes back as an UnknownQueue, not a record.
    """
    try:
        ready, consumers = declare_passive(connection, name)
    except UnknownQueue as unknown:
        return unknown
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


def declare_passive(connection, name):
    """``(ready, consumers)`` of a queue by passive declare; raises UnknownQueue when there is none."""
    return on_queue(connection, name, lambda channel: tuple(channel.queue_declare(queue=name, passive=True))[1:])


def on_queue(connection, name, operation):
    """``operation(channel)`` on a channel of its own (a 404 closes it); a missing queue raises UnknownQueue."""
    channel = connection.channel()
    try:
        return operation(channel)
    except connection.channel_errors as exc:
        if getattr(exc, "code", None) != 404:
            raise
        raise UnknownQueue(connection.as_uri(), name) from None
    finally:
        if channel.is_open:
            channel.close()
