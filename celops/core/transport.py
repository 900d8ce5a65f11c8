"""What both transports share: the operations every command may ask of a broker, and the publisher that writes messages with kombu.

``broker.transport`` is a RedisTransport (``redis_transport.py``) or a
RabbitTransport (``rabbit_transport.py``), created once when the broker is
resolved. Each picks its stacks in one place: a lean one (``resp``,
``amqpwire``) for short commands, where start-up time matters, and kombu for
long-lived consumers and for anything that moves or writes other people's
messages (``publisher`` here: a move between brokers publishes to the
destination's publisher and removes the message from the source only once
that returned).
"""

import contextlib
import gc
from collections import namedtuple


@contextlib.contextmanager
def cycle_collection_paused():
    """Python's cycle collector off while messages stream through: a walk makes no reference cycles (reference
    counting frees all it makes), but the collector would go over each chunk's live records again and again,
    a sixth of a move's time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class Transport:
    """The operations; each broker kind's subclass implements them with its stacks."""

    kind = None

    def __init__(self, broker):
        self.broker = broker

    def kombu(self, timeout):
        """A connected kombu Connection (failover and Sentinel included); raises BrokerUnavailable."""
        return self.broker.kombu(timeout)

    def publisher(self, timeout):
        """A Publisher to this broker: ``publish`` returns once the broker holds every message it was given."""
        return Publisher(self.kombu(timeout))

    def measurer(self, names, timeout, management_url=None, warn=None):
        """A function returning one batch of queue records of ``names`` (None: every queue the broker has, and
        the -A app's) a call, on one connection: cq-len's and cev-top's measurement."""
        raise NotImplementedError

    def queue_work(self, queue, timeout, warn):
        """The subclass's object that walks, moves and trims one queue (a context manager)."""
        raise NotImplementedError

    def move(self, queue, to_queue, selection, destination=None, dry_run=False, timeout=5.0, warn=print,
             finish=None):
        """Move the selected messages of ``queue`` to ``to_queue`` (of ``destination``, another Broker, if given).

        Yields a message record with ``moved_to`` per message moved (or, with
        ``dry_run``, that would be), in delivery order, or the queue's BadKey;
        ``finish(record)``, if given, instead of each record (``walk``'s);
        raises UnknownQueue. Within one Redis each message moves in one
        script or transaction; otherwise it is published and confirmed first, and removed from
        ``queue`` after: a crash in between leaves it in both, never in neither.
        """
        with self.queue_work(queue, timeout, warn) as work:
            if work.problem is not None:
                yield work.problem
                return
            publisher = None
            if dry_run:
                take = None
            elif destination is None and work.moves_within:
                take = work.move_within(to_queue)
            else:
                publisher = (destination or self.broker).transport.publisher(timeout)
                take = work.send_to(publisher, to_queue)
            try:
                def moved(record):
                    record["moved_to"] = to_queue  # each record is new: no copy on this hot path
                    return record if finish is None else finish(record)

                with cycle_collection_paused():
                    yield from work.walk(selection, take, moved)
            finally:
                if publisher is not None:
                    publisher.close()

    def remove(self, queue, selection, dry_run=False, timeout=5.0, warn=print, finish=None):
        """Remove the selected messages of ``queue``: their records (or the queue's BadKey), in delivery order;
        ``finish(record)`` instead of each record, if given (``walk``'s)."""
        with self.queue_work(queue, timeout, warn) as work:
            if work.problem is not None:
                yield work.problem
                return
            with cycle_collection_paused():
                yield from work.walk(selection, None if dry_run else work.remover(), finish)

    def count(self, queue, selection, timeout=5.0, warn=print):
        """``(how many of queue's messages the selection takes, whether that is exact)``, for the consent prompt."""
        with self.queue_work(queue, timeout, warn) as work:
            return (0, True) if work.problem is not None else work.count(selection)

    def trim(self, queue, count, keep=False, newest=False, dry_run=False, timeout=5.0, warn=print):
        """cq-purge's --drop/--keep: a queue record with ``purged``, or the queue's BadKey; raises UnknownQueue."""
        with self.queue_work(queue, timeout, warn) as work:
            if work.problem is not None:
                return work.problem
            return {"type": "queue", "queue": queue, "purged": work.trim(count, keep, newest, dry_run)}

    def check_destination(self, queue, timeout, warn):
        """Make sure moved messages can go to ``queue`` here: raise UsageError, or warn, when they cannot."""
        raise NotImplementedError


# The AMQP properties a moved message keeps (as kombu's Producer.publish takes them); the rest
# (delivery info, tags) follows the destination.
KEPT_PROPERTIES = ("priority", "delivery_mode", "correlation_id", "reply_to", "expiration", "message_id",
                   "timestamp", "type", "user_id", "app_id")

# One message as it travels between brokers: body bytes, headers, content type and encoding, KEPT_PROPERTIES.
Envelope = namedtuple("Envelope", "body headers content_type content_encoding properties")


def envelope_of_kombu(envelope):
    """The Envelope of a message as kombu's virtual transports store it (Redis), parsed: JSON around the encoded
    body. Raises ValueError, TypeError or AttributeError for what is not one."""
    import base64

    properties = envelope.get("properties") or {}
    body = envelope.get("body") or ""
    body = base64.b64decode(body) if properties.get("body_encoding") == "base64" else body.encode("utf-8")
    return Envelope(body, envelope.get("headers") or {}, envelope.get("content-type"),
                    envelope.get("content-encoding"),
                    {key: properties[key] for key in KEPT_PROPERTIES if properties.get(key) is not None})


class Publisher:
    """Publishes Envelopes through the default exchange with kombu's Producer (kombu writes the envelope).

    On Redis a publish is an LPUSH that has returned: the message is in the
    list when ``publish`` returns.
    """

    def __init__(self, connection):
        from kombu import Producer

        self.connection = connection
        self.producer = Producer(connection.default_channel)

    def publish(self, envelopes, queue):
        for envelope in envelopes:
            self._send(envelope, queue)

    def _send(self, envelope, queue, **options):
        properties = dict(envelope.properties)
        if "expiration" in properties:  # milliseconds on the wire; kombu takes seconds
            properties["expiration"] = float(properties["expiration"]) / 1000
        self.producer.publish(envelope.body, routing_key=queue, exchange="", headers=dict(envelope.headers),
                              content_type=envelope.content_type, content_encoding=envelope.content_encoding,
                              serializer=None, retry=False, **properties, **options)

    def close(self):
        self.connection.release()
