"""Redis as celops talks to it: one place that picks the stack and connects (failover lists, Sentinel, sockets).

Lean ``resp`` (hiredis over one socket) for everything short — queues,
lengths, peeks, purges, the pidbox mailbox (rediss:// too) — and the raw
PSUBSCRIBE reader for events; kombu only where other people's messages are
moved or written (``Transport.get``/``publish``).
"""

from celops.core.exits import UsageError
from celops.core.transport import Transport

CHUNK = 1000  # messages per LRANGE when peeking: bounded memory, streaming output


class RedisTransport(Transport):
    kind = "redis"

    def client(self, timeout, warn=None):
        """A connected ``resp.Redis`` with the cluster's key layout adopted (see ``queues.redis_client``)."""
        from celops.core.queues import redis_client

        return redis_client(self.broker, timeout, warn)

    def existing_queues(self, timeout, management_url=None, include_internal=False, client=None, warn=None):
        """Sorted names of the queues the binding sets hold."""
        from celops.core.queues import is_internal, redis_queue_names

        names = redis_queue_names(self.broker, client or self.client(timeout, warn))
        return sorted(name for name in names if include_internal or not is_internal(name))

    def measurer(self, names, timeout, management_url=None, warn=None):
        """A function returning one batch of queue records (``queues.redis_lengths``) on one connection.

        None ``names`` means every queue the broker has, and the -A app's. A
        lost connection is reconnected on the next call (``reconnect_measurer``).
        """
        from celops.core.queues import redis_lengths

        broker = self.broker
        client = self.client(timeout, warn)

        def measure():
            self.still_master(client, timeout)
            queues = names if names is not None else sorted(
                {*self.existing_queues(timeout, client=client), *(broker.queues or [])})
            return redis_lengths(broker, client, queues, warn)
        return measure

    def still_master(self, client, timeout):
        """Through Sentinel, raise BrokerUnavailable once the master ``client`` talks to has been demoted.

        A demoted master keeps answering reads (and, for seconds, even says it is a master), so a
        long-lived reader would go on with stale data without this check.
        """
        if self.broker.sentinel:
            from celops.core.sentinel import still_master

            still_master(self.broker, client, timeout)

    def queue_work(self, queue, timeout, warn):
        from celops.core.redis_move import RedisQueueWork

        return RedisQueueWork(self, queue, timeout, warn)

    def check_destination(self, queue, timeout, warn):
        """Redis takes messages for any queue: one it does not know (no list, no binding) gets a warning."""
        from celops.core.queues import UnknownQueue, redis_lengths

        client = self.client(timeout, warn)
        try:
            (found,) = redis_lengths(self.broker, client, [queue], lambda message: None)
        finally:
            client.close()
        if isinstance(found, UnknownQueue):
            warn(f"{found}: the messages will wait there until a worker consumes {queue!r}")

    def purger(self, timeout, unacked, warn):
        from celops.core.purge import RedisPurger

        return RedisPurger(self, timeout, unacked, warn)

    def open_mailbox(self, timeout, warn=None):
        from celops.core.broadcast import RedisMailbox

        return RedisMailbox(self.broker, timeout, warn)

    def event_source(self, args):
        from celops.core.redis_events import RedisEventSource

        if args.queue or args.ttl or args.expires:
            raise UsageError("--queue, --ttl and --expires apply to RabbitMQ only")
        return RedisEventSource(self.broker, args)

    def peek(self, queue, offset, limit, timeout, management_url=None, warn=None):
        """Walk the priority lists in delivery order: step 0 first; within a list, the right end (oldest) first.

        A key of another type than a list gives a BadKey naming it, and the walk goes on; a queue with no
        list and no binding raises UnknownQueue.
        """
        from celops.core.decode import redis_message
        from celops.core.queues import known_only, length_or_problem
        from celops.core.resp import ReplyError

        broker = self.broker
        client = self.client(timeout, warn)
        keys = [key for _, key in broker.priority_keys(queue)]
        lengths = [length_or_problem(client, queue, key, reply)
                   for key, reply in zip(keys, client.pipeline(("LLEN", key) for key in keys))]
        if not any(isinstance(length, int) and length for length in lengths):
            (known,) = known_only(broker, client, [{"queue": queue}], lambda record: 0)
            if not isinstance(known, dict):
                raise known
        remaining = limit
        for key, length in zip(keys, lengths):
            if not isinstance(length, int):
                yield length
                continue
            if offset >= length:
                offset -= length
                continue
            end = length if remaining is None else min(length, offset + remaining)
            for start in range(offset, end, CHUNK):
                stop = min(start + CHUNK, end)
                # delivery position p is list index -(p + 1)
                (chunk,) = client.pipeline([("LRANGE", key, -stop, -start - 1)])
                if isinstance(chunk, ReplyError):  # the key changed type while we read it
                    yield length_or_problem(client, queue, key, chunk)
                    break
                for raw in reversed(chunk):
                    yield redis_message(queue, raw)
            if remaining is not None:
                remaining -= end - offset
                if remaining <= 0:
                    return
            offset = 0
