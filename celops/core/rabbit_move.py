"""Moving and removing waiting messages of a RabbitMQ queue, and publishing with publisher confirms.

RabbitMQ has no way to take a message from the middle of a queue: the
messages are taken from its head (basic.get), those selected are published
to the destination and acknowledged once the destination confirmed them,
and the others stay unacknowledged until the channel closes, when RabbitMQ
puts them back (see cq-move's RABBITMQ section for what it does to their
order and redelivered flag).
"""

from celops.core.exits import CelopsError
from celops.core.transport import KEPT_PROPERTIES, Envelope, Publisher

CHUNK = 1000  # messages published before waiting for the destination's confirms
WRITE_EVERY = 100  # publishes written at once


def envelope_of_amqp(message):
    """The Envelope of a py-amqp message (basic.get)."""
    properties = message.properties
    return Envelope(message.body, properties.get("application_headers") or {}, properties.get("content_type"),
                    properties.get("content_encoding"),
                    {key: properties[key] for key in KEPT_PROPERTIES if properties.get(key) is not None})


def record_of_amqp(queue, message):
    """The message record (cq-peek's) of a py-amqp message."""
    import base64

    from celops.core.decode import task_message

    properties = message.properties
    body = message.body if isinstance(message.body, bytes) else str(message.body).encode()
    return task_message(queue, properties.get("application_headers") or {}, properties.get("priority"),
                        properties.get("content_type"), base64.b64encode(body).decode(), "base64")


class ConfirmedPublisher(Publisher):
    """Publishes with publisher confirms and ``mandatory``: ``publish`` returns once RabbitMQ confirmed every
    message it was given, and raises when one was refused (nack) or could not be routed to the queue.

    kombu's Producer builds each message; the frames py-amqp would write one
    publish at a time are written WRITE_EVERY at a time (``publish_frames``).
    """

    def __init__(self, connection, timeout):
        super().__init__(connection)
        self.timeout = timeout
        channel = connection.default_channel
        channel.confirm_select()
        self.gathering = GatheringChannel(channel)
        self.producer.revive(self.gathering)
        self.sent = self.confirmed = 0
        self.refused = []
        channel.events["basic_ack"].add(self._acked)
        channel.events["basic_nack"].add(lambda tag, multiple: self.refused.append("refused (nack)"))
        channel.events["basic_return"].add(
            lambda exc, exchange, routing_key, message: self.refused.append(f"not routed to {routing_key!r}: {exc}"))

    def _acked(self, tag, multiple):
        self.confirmed = tag if multiple else max(self.confirmed, tag)

    def publish(self, envelopes, queue):
        import socket

        for count, envelope in enumerate(envelopes, 1):
            self._send(envelope, queue, mandatory=True)
            if count % WRITE_EVERY == 0:
                self.gathering.write()  # RabbitMQ works on these while the next ones are encoded
        self.gathering.write()
        self.sent += len(envelopes)
        while self.confirmed < self.sent and not self.refused:
            try:
                self.connection.drain_events(timeout=self.timeout)
            except socket.timeout:
                raise CelopsError(f"RabbitMQ did not confirm the messages published to {queue!r} within "
                                  f"{self.timeout:g}s; they stay in the source too") from None
        if self.refused:
            raise CelopsError(f"RabbitMQ refused a message published to {queue!r} ({self.refused[0]}); "
                              "it stays in the source")


class GatheringChannel:
    """The channel kombu's Producer publishes on: what it hands py-amqp's ``basic_publish`` is gathered, and
    ``write`` sends the frames of all of it in one write on the real channel's connection."""

    def __init__(self, channel):
        self.channel = channel
        self.frames = []

    def __getattr__(self, name):
        return getattr(self.channel, name)

    def basic_publish(self, message, exchange="", routing_key="", mandatory=False, immediate=False, **timeouts):
        from celops.core.publish_frames import publish_frames

        self.frames.append(publish_frames(self.channel.channel_id, self.channel.connection.frame_max, message,
                                          exchange, routing_key, mandatory, immediate))

    def write(self):
        frames, self.frames = b"".join(self.frames), []
        if frames:
            self.channel.connection.transport.write(frames)
            self.channel.connection.bytes_sent += 1  # as py-amqp counts writes, for its heartbeats


class RabbitQueueWork:
    """One source queue on a channel of its own: walks from its head, messages not selected held until closed."""

    moves_within = False  # RabbitMQ moves through a publisher, even to a queue of its own
    problem = None

    def __init__(self, transport, queue, timeout, warn):
        from celops.core.queues import declare_passive

        self.queue = queue
        self.connection = transport.kombu(timeout)
        try:
            self.ready, _ = declare_passive(self.connection, queue)  # UnknownQueue for a queue RabbitMQ lacks
            self.channel = self.connection.channel()
        except BaseException:
            self.connection.release()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        """Close the channel: RabbitMQ puts back every message taken and not acknowledged."""
        try:
            if self.channel.is_open:
                self.channel.close()
        finally:
            self.connection.release()

    def walk(self, selection, take, finish=None):
        """Yield ``finish(record)`` (default: the record) of each selected message that ``take`` handled, in
        delivery order.

        At most the messages ready when the walk started are looked at.
        ``take([message, ...])`` publishes them elsewhere (or nothing); they
        are acknowledged once it returned. ``take`` None is a dry run: nothing
        is acknowledged.
        """
        remaining = selection.limit
        seen = 0
        picked = []
        while seen < self.ready and (remaining is None or remaining > len(picked)):
            message = self.channel.basic_get(self.queue, no_ack=False)
            if message is None:
                break
            seen += 1
            record = record_of_amqp(self.queue, message)
            if selection.matches(record):
                picked.append((record if finish is None else finish(record), message))
            if len(picked) >= CHUNK:
                yield from self._handled(picked, take)
                remaining = None if remaining is None else remaining - len(picked)
                picked = []
        yield from self._handled(picked, take)

    def _handled(self, picked, take):
        if picked and take is not None:
            take([message for _, message in picked])
            for _, message in picked:  # one by one: the messages not selected are held unacknowledged between
                self.channel.basic_ack(message.delivery_tag)
        for item, _ in picked:
            yield item

    def count(self, selection):
        """Without taking anything: the ready count (at most -n), exact only when nothing filters."""
        count = self.ready if selection.limit is None else min(self.ready, selection.limit)
        return count, not selection.filtered

    def send_to(self, publisher, to_queue):
        """A ``take`` that publishes the messages to ``to_queue``, returning once they are confirmed."""
        return lambda messages: publisher.publish([envelope_of_amqp(message) for message in messages], to_queue)

    def remover(self):
        """A ``take`` that does nothing: acknowledging them removes them."""
        return lambda messages: None

    def trim(self, count, keep, newest, dry_run):
        """Only the next ``count`` can go (basic.get and ack, oldest first); see cq-purge's RABBITMQ section."""
        from celops.core.exits import UsageError
        from celops.core.selection import Selection

        if keep or newest:
            raise UsageError("RabbitMQ gives messages only from the head of a queue: of the trims only --drop N "
                             "(the next N) is possible there; --keep and --newest would have to take every "
                             "message and put some back out of order")
        if dry_run:
            return min(count, self.ready)
        return sum(1 for _ in self.walk(Selection(limit=count), self.remover()))
