"""Counting and purging queues, for cq-purge and the coming cq-purge --keep/--drop (``trim``)."""

from celops.core.exits import CelopsError
from celops.core.queues import UnknownQueue

# The unacked entries --unacked removes per HDEL (and ZREM) command.
UNACKED_DELETE_CHUNK = 1000


class RedisPurger:
    """Counts and purges Redis queues: their priority lists and, if asked, their unacked entries."""

    def __init__(self, transport, timeout, unacked, warn):
        self.transport = transport
        self.broker = transport.broker
        self.client = transport.client(timeout, warn)
        self.with_unacked = unacked

    def existing(self, management_url=None):
        return self.transport.existing_queues(None, client=self.client)

    def _lengths(self, queues):
        """Per queue, ``{key: length}`` of its priority lists (one pipeline), or a BadKey if one is not a list."""
        from celops.core.queues import BadKey, length_or_problem

        keys = [key for queue in queues for _, key in self.broker.priority_keys(queue)]
        replies = iter(self.client.pipeline(("LLEN", key) for key in keys))
        by_queue = {}
        for queue in queues:
            lengths = {key: length_or_problem(self.client, queue, key, next(replies))
                       for _, key in self.broker.priority_keys(queue)}
            by_queue[queue] = next((value for value in lengths.values() if isinstance(value, BadKey)), lengths)
        return by_queue

    def counts(self, queues):
        lengths = self._lengths(queues)
        tags = self._unacked_tags(queues) if self.with_unacked else None
        return self._known([self._record(queue, sum(found.values()), tags) if isinstance(found, dict) else found
                            for queue, found in lengths.items()])

    def purge(self, queues):
        """LLEN and UNLINK every priority list in one MULTI/EXEC, so the counts are exactly what went.

        A queue with a key that is not a list is left alone and reported.
        """
        lengths = self._lengths(queues)
        lists = [queue for queue, found in lengths.items() if isinstance(found, dict)]
        tags = self._unacked_tags(lists) if self.with_unacked else None
        keys = [key for queue in lists for key in lengths[queue]]
        *_, replies = self.client.pipeline([("MULTI",), *(command for key in keys
                                                           for command in (("LLEN", key), ("UNLINK", key))),
                                            ("EXEC",)])
        if not isinstance(replies, list):
            raise CelopsError(f"purge transaction failed: {replies}")
        self._drop_unacked(tags or {})
        purged = iter(replies[0::2])
        return self._known([self._record(queue, sum(next(purged) for _ in found), tags)
                            if isinstance(found, dict) else found for queue, found in lengths.items()])

    def _known(self, items):
        """Records of queues with nothing to purge and no binding become UnknownQueue (never a silent 0)."""
        from celops.core.queues import known_only

        return known_only(self.broker, self.client, items,
                          lambda record: record["purged"] + record.get("unacked_purged", 0))

    @staticmethod
    def _record(queue, purged, tags):
        record = {"type": "queue", "queue": queue, "purged": purged}
        if tags is not None:
            record["unacked_purged"] = len(tags.get(queue, ()))
        return record

    def _drop_unacked(self, tags):
        """HDEL and ZREM the entries, UNACKED_DELETE_CHUNK tags a command: no command long enough to stall Redis."""
        from celops.core.queues import unacked_key

        every_tag = [tag for queue_tags in tags.values() for tag in queue_tags]
        index_key = self.broker.key(self.broker.transport_options.get("unacked_index_key", "unacked_index"))
        for start in range(0, len(every_tag), UNACKED_DELETE_CHUNK):
            chunk = every_tag[start:start + UNACKED_DELETE_CHUNK]
            self.client.checked(("HDEL", unacked_key(self.broker), *chunk), ("ZREM", index_key, *chunk))

    def _unacked_tags(self, queues):
        """``{queue: [delivery tags]}`` of the unacked entries routed to each queue (HSCAN)."""
        import orjson

        from celops.core.queues import unacked_key

        wanted = set(queues)
        tags = {}
        entries = self.client.scan("HSCAN", unacked_key(self.broker))
        for tag, value in zip(entries, entries):
            try:
                routing_key = orjson.loads(value)[2]
            except (orjson.JSONDecodeError, IndexError, KeyError, TypeError):
                continue
            if routing_key in wanted:
                tags.setdefault(routing_key, []).append(tag)
        return tags


class RabbitPurger:
    """Counts (ready messages, by passive declare) and purges RabbitMQ queues with queue.purge."""

    def __init__(self, transport, timeout):
        self.transport = transport
        self.timeout = timeout
        self.connection = transport.kombu(timeout)

    def existing(self, management_url=None):
        return self.transport.existing_queues(self.timeout, management_url)

    def counts(self, queues):
        from celops.core.queues import declare_passive

        return _each(queues, lambda queue: declare_passive(self.connection, queue)[0])

    def purge(self, queues):
        from celops.core.queues import on_queue

        return _each(queues, lambda queue: on_queue(self.connection, queue,
                                                    lambda channel: channel.queue_purge(queue)) or 0)


def _each(queues, purged):
    """A record ``{"queue", "purged": purged(queue)}`` per queue, or the UnknownQueue it raised."""
    for queue in queues:
        try:
            yield {"type": "queue", "queue": queue, "purged": purged(queue)}
        except UnknownQueue as unknown:
            yield unknown
