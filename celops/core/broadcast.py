"""Remote control through celery's pidbox mailbox, as ``app.control.broadcast`` does it.

Only a broker connection is needed, no app: the mailbox is celery's default
``celery`` fanout exchange (``celery.pidbox``) with JSON bodies, and replies
come back through the ``reply.celery.pidbox`` direct exchange.

``open_mailbox`` gives a session that sends many requests and collects their
replies against one overall deadline. Each session has a reply queue of its
own (a fresh random id, so a previous run's queue is never read) and each
request a fresh ticket, so replies to anything else are dropped. The reply
queue is removed when the session closes, timeouts included: no orphaned
``*.reply.celery.pidbox`` keys on Redis (celery issue 6089).

Start-up time is most of a ``cctl ping``, and importing kombu (and redis-py)
costs more than the rest of it: so on Redis (``redis://``, ``rediss://``,
Sentinel, sockets) the session speaks the Redis protocol itself, and on
``amqp://``/``amqps://`` the few AMQP methods it needs (``amqpwire``). The
transport (``broker.transport.open_mailbox``) picks which.
"""

import base64
import contextlib
import os
import time

MAILBOX_NAME = "celery"
EXCHANGE = f"{MAILBOX_NAME}.pidbox"
REPLY_EXCHANGE = f"reply.{MAILBOX_NAME}.pidbox"
# celery's control_queue_expires and control_queue_ttl: a reply queue outlives
# a crashed client by this long at most (RabbitMQ; Redis keys get deleted).
REPLY_QUEUE_EXPIRES = 10.0
REPLY_MESSAGE_TTL = 300.0
# kombu's MIN_BINDING_TTL: how long a Redis binding table is kept without refresh.
BINDING_TTL_MS = 60 * 60 * 1000
# Cleaning up after Ctrl-C may take a fresh connection, but never long.
CLEANUP_TIMEOUT = 1.0


def new_id():
    """A random uuid4-shaped id, for reply queues, tickets and delivery tags (no uuid import at start-up)."""
    digits = os.urandom(16).hex()
    variant = "89ab"[int(digits[16], 16) & 3]
    return f"{digits[:8]}-{digits[8:12]}-4{digits[13:16]}-{variant}{digits[17:20]}-{digits[20:]}"


def mailbox(connection):
    """celery's control mailbox bound to ``connection`` (kombu Mailbox, JSON, fanout)."""
    from kombu.pidbox import Mailbox

    return Mailbox(MAILBOX_NAME, type="fanout", accept=["json"], serializer="json")(connection)


def send(connection, command, arguments=None, destination=None):
    """Fire and forget: broadcast ``command`` without waiting for replies (``heartbeat``, ``enable_events``)."""
    mailbox(connection)._broadcast(command, arguments or {}, destination, reply=False)


def open_mailbox(broker, timeout, warn=None):
    """A reply-collecting session on ``broker``; connecting gives up after ``timeout`` seconds.

    ``warn`` says what a Redis session inferred about the cluster (see RedisMailbox).
    """
    return broker.transport.open_mailbox(timeout, warn)


class _Session:
    """What both transports share: request bodies, tickets, and reply filtering."""

    def __init__(self):
        self.oid = new_id()
        self.reply_queue = f"{self.oid}.{REPLY_EXCHANGE}"
        self.tickets = set()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, traceback):
        try:
            self.close()
        except Exception:
            if exc_type is None:
                raise
            # Ctrl-C, or the broker gone mid-session: that is the ending to report, not the failed cleanup after it

    def request_body(self, command, arguments, destination, ticket):
        """The pidbox request, as kombu's ``Mailbox._publish`` builds it."""
        return {"method": command, "arguments": arguments, "destination": destination or None,
                "pattern": None, "matcher": None, "ticket": ticket,
                "reply_to": {"exchange": REPLY_EXCHANGE, "routing_key": self.oid}}

    def request(self, command, arguments, destination=None, expires_in=None):
        """Send one request; returns its ticket."""
        ticket = new_id()
        headers = {"clock": 1, "expires": time.time() + expires_in if expires_in else 0}
        self._publish(self.request_body(command, arguments, destination, ticket), headers)
        self.tickets.add(ticket)
        return ticket

    def replies(self, deadline):
        """Yield ``(ticket, hostname, reply)`` for our tickets until ``deadline`` (monotonic) or close."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            for ticket, body in self._receive(remaining):
                if ticket not in self.tickets or not isinstance(body, dict):
                    continue  # a stale reply: another request's, or garbage
                for hostname, reply in body.items():
                    yield ticket, hostname, reply


class RedisMailbox(_Session):
    """The pidbox protocol straight over a Redis socket, as kombu's Redis transport lays it out.

    Requests are PUBLISHed to ``/{db}.celery.pidbox``; workers find our reply
    queue through the ``_kombu.binding.reply.celery.pidbox`` set and LPUSH
    replies onto it; we BRPOP them. ``global_keyprefix``, ``sep`` and
    ``fanout_prefix`` from the app's transport options are honoured.

    Our binding member must be in the workers' ``sep``: one they cannot
    split breaks every reply of every client ("not enough values to
    unpack") until it is removed. Without -A, the sep is taken from the
    workers' own mailbox bindings and the reply bindings, before anything is
    written (``adopt_cluster_layout``).
    """

    def __init__(self, broker, timeout, warn=None):
        super().__init__()
        from celops.core.redis_layout import adopt_cluster_layout
        from celops.core.resp import Redis

        self.broker = broker
        self.wire = Redis.connect(broker, timeout)
        self.binding_key = broker.key(f"_kombu.binding.{REPLY_EXCHANGE}")
        adopt_cluster_layout(broker, self.wire, warn, find_steps=False,
                             binding_keys=[broker.key(f"_kombu.binding.{EXCHANGE}"), self.binding_key])
        self.topic = broker.fanout_topic(EXCHANGE)
        self.binding = broker.sep.join([self.oid, "", self.reply_queue])
        self.reply_keys = [key for _, key in broker.priority_keys(self.reply_queue)]
        self.timeout = timeout
        self._bound = False

    def _publish(self, body, headers):
        import orjson

        if not self._bound:
            self.wire.checked(
                ("SADD", self.binding_key, self.binding),
                # as kombu does for expiring queues: sweepable if we are killed
                ("ZADD", self.broker.key("_kombu.binding_deadlines"), "GT",
                 int(time.time() * 1000) + BINDING_TTL_MS, REPLY_EXCHANGE))
            self._bound = True
        envelope = {
            "body": base64.b64encode(orjson.dumps(body)).decode(),
            "content-encoding": "utf-8", "content-type": "application/json", "headers": headers,
            "properties": {"delivery_mode": 2, "delivery_info": {"exchange": EXCHANGE, "routing_key": ""},
                           "priority": 0, "body_encoding": "base64", "delivery_tag": new_id()}}
        self.wire.call("PUBLISH", self.topic, orjson.dumps(envelope))

    def _receive(self, remaining):
        import json  # not orjson: workers' replies may hold NaN or Infinity (conf --include-defaults)

        wait = f"{max(remaining, 0.001):.3f}"  # never "0.000": BRPOP 0 blocks forever
        popped = self.wire.call("BRPOP", *self.reply_keys, wait, timeout=remaining + 1)
        if not popped:
            return
        envelope = json.loads(popped[1])
        body = envelope.get("body") or b""
        if envelope.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        yield envelope.get("headers", {}).get("ticket"), json.loads(body)

    def close(self):
        """Unbind first, then delete: a worker that finds no binding drops its late reply.

        A BRPOP cut short by Ctrl-C leaves the connection dropped (its reply is
        still due): a fresh one cleans up, so no reply queue is left behind.
        """
        try:
            if self._bound:
                if self.wire.closed:
                    from celops.core.resp import Redis

                    self.wire = Redis.connect(self.broker, min(self.timeout, CLEANUP_TIMEOUT))
                self.wire.checked(("SREM", self.binding_key, self.binding), ("DEL", *self.reply_keys))
        finally:
            self.wire.close()


class AmqpMailbox(_Session):
    """The session on RabbitMQ, declaring exactly what kombu's Mailbox declares (``amqpwire``)."""

    def __init__(self, broker, timeout):
        super().__init__()
        from celops.core.amqpwire import Connection

        self.connection = Connection.connect(broker, timeout)
        self.url = broker.url
        connection = self.connection
        connection.exchange_declare(REPLY_EXCHANGE, "direct")
        connection.queue_declare(self.reply_queue, {
            "x-expires": int(REPLY_QUEUE_EXPIRES * 1000), "x-message-ttl": int(REPLY_MESSAGE_TTL * 1000)})
        connection.queue_bind(self.reply_queue, REPLY_EXCHANGE, self.oid)
        self.consumer_tag = connection.consume(self.reply_queue)
        connection.exchange_declare(EXCHANGE, "fanout")

    def _publish(self, body, headers):
        import orjson

        with self._plain_words():
            self.connection.publish(EXCHANGE, "", orjson.dumps(body), headers, "application/json")

    def _receive(self, remaining):
        import json  # see RedisMailbox._receive

        with self._plain_words():
            received = self.connection.drain(remaining)
        for headers, body in received:
            yield headers.get("ticket"), json.loads(body)

    @contextlib.contextmanager
    def _plain_words(self):
        """A lost connection, a close from the broker or a block (resource alarm) as BrokerUnavailable."""
        from celops.core.exits import BrokerUnavailable

        try:
            yield
        except OSError as exc:
            raise BrokerUnavailable(self.url, str(exc) or type(exc).__name__) from exc

    def close(self):
        try:
            self.connection.cancel(self.consumer_tag)
            self.connection.queue_delete(self.reply_queue)
        finally:
            self.connection.close()
