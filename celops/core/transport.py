"""What both transports share: the operations every command may ask of a broker, and kombu's get/publish.

``broker.transport`` is a RedisTransport (``redis_transport.py``) or a
RabbitTransport (``rabbit_transport.py``), created once when the broker is
resolved. Each picks its stacks in one place: a lean one (``resp``,
``amqpwire``) for short commands, where start-up time matters, and kombu for
long-lived consumers and for anything that moves or writes other people's
messages (``get``/``publish`` here: a move between brokers is
``source.transport.get`` then ``destination.transport.publish``).
"""


class Transport:
    """The operations; each broker kind's subclass implements them with its stacks."""

    kind = None

    def __init__(self, broker):
        self.broker = broker

    def kombu(self, timeout):
        """A connected kombu Connection (failover and Sentinel included); raises BrokerUnavailable."""
        return self.broker.kombu(timeout)

    def get(self, connection, queue):
        """The next message of ``queue`` (a kombu Message: the caller acks it once it is safe elsewhere),
        or None when the queue is empty; UnknownQueue when RabbitMQ has no such queue."""
        from celops.core.queues import UnknownQueue

        try:
            return connection.default_channel.basic_get(queue, no_ack=False)
        except connection.channel_errors as exc:
            if getattr(exc, "code", None) != 404:
                raise
            raise UnknownQueue(self.broker.url, queue) from None

    def publish(self, connection, message, queue):
        """Publish a kombu Message as it is (body, headers, properties) to ``queue`` through the default exchange."""
        from kombu import Producer

        properties = dict(message.properties)
        properties.pop("delivery_info", None)
        properties.pop("delivery_tag", None)
        properties.pop("body_encoding", None)
        Producer(connection.default_channel).publish(
            message.body, routing_key=queue, exchange="", headers=message.headers,
            content_type=message.content_type, content_encoding=message.content_encoding,
            serializer=None, **{key: value for key, value in properties.items()
                                if key in ("priority", "delivery_mode", "correlation_id", "reply_to", "expiration")})
