"""cev-dump's and cev-cam's RabbitMQ event source: a queue bound to the celeryev exchange (see events.py)."""

import socket
import time
import uuid

from celops.core.events import CELERY_QUEUE_EXPIRES, CELERY_QUEUE_TTL, EventSource, socket_reason
from celops.core.exits import BrokerUnavailable
from celops.core.reconnect import Reconnection

NAMED_QUEUE_PREFETCH = 5000


class AmqpEventSource(EventSource):
    """A queue bound to the celeryev topic exchange with ``#``, consumed by the reader thread.

    With ``--queue`` messages are acknowledged only after the caller has taken
    all their events (the reader thread acks up to the tag the caller reports),
    so a restart or an early exit leaves the rest in the queue.
    """

    def __init__(self, broker, args):
        super().__init__(broker, args)
        self.durable = bool(args.queue)
        self.queue_name = args.queue or f"celeryev.{uuid.uuid4()}"
        self.ttl = args.ttl if args.ttl or args.queue else CELERY_QUEUE_TTL
        self.expires = args.expires if args.expires or args.queue else CELERY_QUEUE_EXPIRES
        self._connection = None
        self._generation = 0
        self._taken = None  # (generation, delivery tag) of the message whose events are pending
        self._done = None  # the last (generation, tag) whose events were all taken

    def _queue(self):
        from kombu import Exchange, Queue

        return Queue(self.queue_name, Exchange(self.exchange, type="topic"), routing_key="#",
                     durable=self.durable, auto_delete=not self.durable,
                     message_ttl=self.ttl, expires=self.expires)

    def _connect_first(self):
        self._connection = self._connect(self.broker.kombu(self.connect_timeout))

    def _connect(self, connection):
        """Declare and bind the queue on a fresh channel; returns the connection."""
        self._generation += 1
        channel = connection.channel()
        queue = self._queue()(channel)
        queue.declare()
        if self.durable:
            channel.basic_qos(0, NAMED_QUEUE_PREFETCH, False)
        generation = self._generation
        put = self.backlog.put

        def on_message(message):
            body = message.body
            put((time.time(), body, message.content_type, generation, message.delivery_tag), len(body) + 64)

        from kombu import Consumer

        self._consumer = Consumer(channel, queues=[queue], on_message=on_message, no_ack=not self.durable)
        self._consumer.consume()
        self._channel = channel
        self._acked = 0
        return connection

    def _read_forever(self):
        connection = self._connection
        errors = connection.connection_errors + connection.channel_errors + (OSError,)
        while not self._stop.is_set():
            try:
                connection.drain_events(timeout=0.25)
            except socket.timeout:
                pass
            except errors as exc:
                if self._stop.is_set():
                    break
                outage = Reconnection(self.broker, f"disconnected: {socket_reason(exc)}")
                _release(connection)
                connection = outage.attempt(lambda: self._connect(self.broker.kombu(self.connect_timeout)),
                                            self._stop, (BrokerUnavailable, OSError, *connection.connection_errors))
                if connection is None:
                    return
                self._connection = connection
                self.backlog.put(outage.gap(), 0)
                continue
            self._ack_taken()
        self._ack_taken()
        _release(connection)

    def _ack_taken(self):
        done = self._done
        if self.durable and done and done[0] == self._generation and done[1] > self._acked:
            self._channel.basic_ack(done[1], multiple=True)
            self._acked = done[1]

    def close(self):
        if not self._pending and self._taken:
            self._done = self._taken
        super().close()
        if not self._threads and self._connection is not None:
            _release(self._connection)  # connected but never started (cev-cam failed to start): no reader frees it

    def _decode_item(self, item):
        received, body, content_type, generation, tag = item
        if self._taken:
            self._done = self._taken
        self._taken = (generation, tag)
        self._decode_body(body, content_type, received, len(body))


def _release(connection):
    try:
        connection.release()
    except Exception:  # already broken: nothing more to free
        pass

