"""The Celery event stream, read without silent loss (shared by cev-dump and cev-cam).

Reading the broker is decoupled from decoding and writing: a reader thread
only moves bytes (Redis) or raw messages (RabbitMQ) into a bounded in-memory
backlog, so a slow consumer downstream never makes the broker drop the
subscription. The caller's thread decodes (orjson) as it takes.

API::

    add_source_options(parser)   # --buffer, --queue, --ttl, --expires, --wakeup, --enable-events
    source = EventSource.from_args(broker, args)
    source.connect()                                     # optional: BrokerUnavailable now, before a fork
    with source:                                         # connects if not yet, starts the reader thread
        for record in source: ...                        # blocks; records in arrival order
        record = source.get(timeout)                     # the next record, or None after `timeout` s
        records = source.get_batch(timeout)              # all decoded so far, or [] after `timeout` s

Records are dicts:

- events: every field the worker sent plus ``local_received`` (epoch float,
  when the bytes reached celops); ``task.multi`` batches come out one event
  per record, in order;
- ``{"type": "celops-gap", "reason", "since", "until", "dropped"}`` when the
  connection was lost (broker restart, output-buffer limit, backlog full):
  the source reconnects with backoff on its own and goes on;
- ``{"type": "error", "error", "size", "local_received"}`` for a wire message
  that is not a decodable event (bad base64, bad JSON, not an object, an
  object without a string ``type``).

``-t`` is the connect deadline (the first connection: exit 69 after it; each
reconnection attempt after a gap); commands give any idle or overall limit
an option of its own.

Redis: celery makes ``celeryev`` a fanout exchange there, published with
``PUBLISH {global_keyprefix}/{db}.celeryev/<routing key>``; we PSUBSCRIBE
``{global_keyprefix}/{db}.celeryev/*`` on a raw socket (kombu/transport/redis.py:
``keyprefix_fanout``, ``_get_publish_topic``, ``PrefixedRedisPubSub``).
RabbitMQ: a queue bound to the ``celeryev`` topic exchange with ``#``, as
celery's Receiver declares it (``celeryev.<uuid>``, 5 s message TTL, 60 s
expiry), or ``--queue NAME``: durable, no TTL, acknowledged only once the
caller has taken its events, so nothing is lost between runs.
"""

import collections
import os
import socket
import stat
import sys
import threading
import time
import uuid
from binascii import Error as BinasciiError
from binascii import a2b_base64

from orjson import loads

from celops import records
from celops.core import cli
from celops.core.exits import BrokerUnavailable
from celops.core.reconnect import Reconnection

DEFAULT_BUFFER_MB = 256
DEFAULT_CONNECT_TIMEOUT = 5.0
CONNECT_TIMEOUT_HELP = (f"give up connecting to the broker after this long (default {DEFAULT_CONNECT_TIMEOUT:g}): "
                        "at start, exit 69; after a disconnect, each attempt to reconnect, retried without end")
EVENT_EXCHANGE = "celeryev"
CELERY_QUEUE_TTL = 5.0  # celery's event_queue_ttl
CELERY_QUEUE_EXPIRES = 60.0  # celery's event_queue_expires
ENABLE_EVENTS_EVERY = 5.0  # as Flower does
NAMED_QUEUE_PREFETCH = 5000
RECV_BYTES = 1 << 22
READER_SWITCH_INTERVAL = 0.0005
MASTER_CHECK_EVERY = 0.5  # seconds between ROLE checks of a master found through Sentinel
HANDOVER_LIMIT = 30.0  # seconds a demoted master is read at most (Redis drops its clients about 10 s after)


def reads_broker(args, io):
    """Whether events come from the broker (--live, -b, -A, --detach, a tty on stdin) or from NDJSON (FILE
    arguments, a piped or redirected stdin): cev-cam and cev-top decide alike."""
    if args.files:
        return False
    if args.live or args.broker or args.app or getattr(args, "detach", False):
        return True
    try:
        mode = os.fstat(io.stdin.fileno()).st_mode
    except (AttributeError, OSError, ValueError):
        return False  # an in-memory stream: tests, embedding
    return not (stat.S_ISFIFO(mode) or stat.S_ISREG(mode) or stat.S_ISSOCK(mode))


def add_source_options(parser):
    """The broker-reading options of every event command, declared once."""
    group = parser.add_argument_group("event source")
    group.add_argument("--buffer", type=cli.positive_float, default=DEFAULT_BUFFER_MB, metavar="MB",
                       help="events read from the broker but not yet written are kept in memory up to "
                            f"this size, so a slow reader downstream loses nothing (default {DEFAULT_BUFFER_MB})")
    group.add_argument("--queue", metavar="NAME",
                       help="RabbitMQ: consume from this durable, non-expiring queue without TTL, so events "
                            "wait for the next run (default: a temporary celeryev.<uuid> queue)")
    group.add_argument("--ttl", type=cli.positive_float, metavar="SECONDS",
                       help=f"RabbitMQ: message TTL of the event queue (default {CELERY_QUEUE_TTL:g}, "
                            "as celery; none with --queue)")
    group.add_argument("--expires", type=cli.positive_float, metavar="SECONDS",
                       help=f"RabbitMQ: delete the unused event queue after this long (default "
                            f"{CELERY_QUEUE_EXPIRES:g}, as celery; never with --queue)")
    group.add_argument("--wakeup", action="store_true",
                       help="broadcast heartbeat on start so that workers show up at once")
    group.add_argument("--enable-events", action="store_true",
                       help=f"broadcast enable_events on start and every {ENABLE_EVENTS_EVERY:g} s, as Flower does")
    return group


def error_record(error, size, received, **extra):
    return records.error(error, size=size, local_received=received, **extra)


class _ReaderFailed:
    """Carries an unexpected exception of the reader thread to the caller's thread."""

    def __init__(self, exc):
        self.exc = exc


class Backlog:
    """A bounded FIFO between the reader thread and the caller's thread, sized in bytes.

    ``put`` blocks while the backlog is full, which stops reading the broker:
    the broker then buffers for us until it cuts the connection (a gap).
    """

    def __init__(self, limit_bytes):
        self._items = collections.deque()
        self._size = 0
        self._limit = limit_bytes
        self._cond = threading.Condition()
        self.closed = False

    def put(self, item, size):
        """Append ``item``; returns when it had to wait for room (epoch float), else None."""
        waited_since = None
        with self._cond:
            while self._size >= self._limit and size and not self.closed:
                waited_since = waited_since or time.time()
                self._cond.wait(0.5)
            self._items.append((item, size))
            self._size += size
            self._cond.notify_all()
        return waited_since

    def take(self, timeout=None):
        """The oldest item, or None when ``timeout`` passes first."""
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
                if not self._items:
                    return None
            item, size = self._items.popleft()
            was_full = self._size >= self._limit
            self._size -= size
            if was_full and self._size < self._limit:
                self._cond.notify_all()
            return item

    def close(self):
        with self._cond:
            self.closed = True
            self._cond.notify_all()


class EventSource:
    """Base of both transports: the backlog, decoding, waking workers, the iterator protocol."""

    def __init__(self, broker, args):
        self.broker = broker
        self.args = args
        self.connect_timeout = args.timeout or DEFAULT_CONNECT_TIMEOUT
        self.connected = False
        self.backlog = Backlog(int(args.buffer * 1024 * 1024))
        self._pending = collections.deque()
        self._stop = threading.Event()
        self._threads = []
        self.exchange = EVENT_EXCHANGE
        if broker.app is not None:
            self.exchange = broker.app.conf.event_exchange or EVENT_EXCHANGE

    @staticmethod
    def from_args(broker, args):
        """The source for ``broker``'s transport, configured by the options of ``add_source_options``."""
        return broker.transport.event_source(args)

    # Lifecycle -------------------------------------------------------------

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info):
        self.close()

    def connect(self):
        """The first connection, without threads: BrokerUnavailable now, and safe to fork after."""
        if not self.connected:
            self._connect_first()
            self.connected = True

    def start(self):
        # The reader thread must get the GIL back soon after its recv returns,
        # not after the default 5 ms, or the broker's buffer fills while we decode.
        sys.setswitchinterval(READER_SWITCH_INTERVAL)
        self.connect()
        self._spawn(self._read_forever, "celops-events-reader")
        if self.args.wakeup or self.args.enable_events:
            self._spawn(self._wake_workers, "celops-events-wakeup")

    def _spawn(self, target, name):
        thread = threading.Thread(target=self._guarded(target), name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _guarded(self, target):
        def run():
            try:
                target()
            except BaseException as exc:  # handed to the caller's thread
                if not self._stop.is_set():
                    self.backlog.put(_ReaderFailed(exc), 0)
        return run

    def close(self):
        self._stop.set()
        self.backlog.close()
        for thread in self._threads:
            thread.join(2.0)

    def _wake_workers(self):
        """``heartbeat`` once (--wakeup), ``enable_events`` now and every few seconds (--enable-events)."""
        from celops.core import broadcast

        connection = None
        commands = (["heartbeat"] if self.args.wakeup else []) + (["enable_events"] if self.args.enable_events else [])
        while not self._stop.is_set():
            try:
                connection = connection or self.broker.kombu(self.connect_timeout)
                for command in commands:
                    broadcast.send(connection, command)
                commands = ["enable_events"] if self.args.enable_events else []
            except Exception:  # the broker is down: the reader reports the gap; try again later
                connection = None
            if not commands or self._stop.wait(ENABLE_EVENTS_EVERY):
                break
        if connection is not None:
            connection.release()

    # Reading ----------------------------------------------------------------

    def __iter__(self):
        while True:
            record = self.get()
            if record is not None:
                yield record

    def get(self, timeout=None):
        """The next record, or None if none arrives within ``timeout`` seconds (None: wait)."""
        pending = self._pending
        if not pending and not self._fill(timeout):
            return None
        return pending.popleft()

    def get_batch(self, timeout=None):
        """Every record decoded so far (at least one), or [] if none arrives within ``timeout``.

        The fast path for writers: one call per read from the broker, not per event.
        """
        pending = self._pending
        if not pending and not self._fill(timeout):
            return []
        batch = list(pending)
        pending.clear()
        return batch

    def _fill(self, timeout):
        """Decode backlog items until some record is pending; False when ``timeout`` passes first."""
        pending = self._pending
        deadline = None if timeout is None else time.monotonic() + timeout
        while not pending:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            item = self.backlog.take(remaining)
            if item is None:
                continue
            if isinstance(item, _ReaderFailed):
                raise item.exc
            if type(item) is dict:
                self._on_gap()
                pending.append(item)
            else:
                self._decode_item(item)
        return True

    def _on_gap(self):
        """Forget what was half-read before the connection dropped."""

    def _decode_body(self, body, content_type, received, size, **where):
        """Queue the events of one message body, and an error record (with ``where``) for what is not one."""
        pending = self._pending
        if content_type and content_type != "application/json":
            pending.append(error_record(f"unsupported content type {content_type}", size, received, **where))
            return
        try:
            value = loads(body)
        except ValueError as exc:
            pending.append(error_record(f"body is not JSON: {exc}", size, received, **where))
            return
        events = [value] if type(value) is dict else value  # a list: task.multi
        if type(events) is not list or not all(type(event) is dict for event in events):
            pending.append(error_record(f"not an event object but {type(value).__name__}", size, received, **where))
            return
        for event in events:
            if _is_event(event):
                event["local_received"] = received
                pending.append(event)
            else:  # every record has a type: what has none is not passed on as an event
                pending.append(error_record(NO_TYPE, size, received, **where))


NO_TYPE = 'an object without a string "type" is not an event'


def _is_event(value):
    return type(value) is dict and value.get("type").__class__ is str


# Redis ----------------------------------------------------------------------


class RedisEventSource(EventSource):
    """PSUBSCRIBE on a raw socket; the reader thread only moves bytes, the caller's thread parses them.

    The RESP parsing is done here rather than with hiredis, whose reader moves
    its whole remaining buffer after every reply: quadratic on big reads. With
    one pattern subscribed, every frame starts with the same bytes.
    """

    def __init__(self, broker, args):
        super().__init__(broker, args)
        suffix = "/*" if broker.transport_options.get("fanout_patterns", True) else ""
        self.pattern = broker.fanout_topic(self.exchange) + suffix
        pattern = self.pattern.encode()
        self._frame_head = b"*4\r\n$8\r\npmessage\r\n$%d\r\n%s\r\n$" % (len(pattern), pattern)
        self._sock = None
        self._stream = 0  # which socket the bytes came from: each has its own partial frame
        self._rest = {}
        self._handover = None  # (socket of the demoted master, Reconnection, deadline) while it is still read
        self._reconnecting = False
        self._switching = threading.Lock()  # one of: a reconnection by the reader, a handover by the watcher

    def _connect_first(self):
        self._sock = self._connect()

    def start(self):
        super().start()
        if self.broker.sentinel:
            self._spawn(self._watch_master, "celops-events-sentinel")

    def _watch_master(self):
        """Through Sentinel: once its master is demoted, subscribe on the new one and read both.

        A demoted master keeps answering for about 10 s, and the workers go on
        publishing there until it drops their connections; reading it until it
        drops ours too (or HANDOVER_LIMIT) is what loses nothing.
        """
        from celops.core.resp import Redis

        client = None
        while not self._stop.wait(MASTER_CHECK_EVERY):
            handover = self._handover
            if handover is not None and time.monotonic() > handover[2]:
                _shut(handover[0])  # its reader writes the switch, with the events since then unknown
            try:
                if client is None or client.url != self.broker.url:
                    client = Redis.connect_in_use(self.broker, self.connect_timeout)  # checks ROLE too
                self.broker.transport.still_master(client, self.connect_timeout)
            except BrokerUnavailable as exc:
                client = None
                with self._switching:
                    if self._handover is None and not self._reconnecting:
                        self._hand_over(exc.reason)

    def _hand_over(self, reason):
        """Subscribe on the master the Sentinels name now and read it too; the old socket is read until it closes.

        When no other master answers, the old socket is closed: the reader
        reconnects with backoff, as after any outage.
        """
        old, outage = self._sock, Reconnection(self.broker, reason)
        try:
            new = self._connect()
        except BrokerUnavailable:
            _shut(old)
            return
        if self.broker.redacted_url == outage.lost:  # the Sentinels still name it: no second subscription
            new.close()
            _shut(old)
            return
        self._handover = (old, outage, time.monotonic() + HANDOVER_LIMIT)
        self._stream += 1
        self._sock, stream = new, self._stream
        self._spawn(lambda: self._read(new, stream), "celops-events-reader")

    def _connect(self):
        """A socket subscribed to the event pattern, with nothing read past the PSUBSCRIBE reply.

        ``resp.Redis`` does the connecting (TLS, AUTH, PING); its socket is then
        handed over to the raw reader.
        """
        from celops.core.resp import Redis

        client = Redis.connect(self.broker, self.connect_timeout)
        sock = client.sock
        try:
            sock.settimeout(self.connect_timeout)
            sock.sendall(client.pack(("PSUBSCRIBE", self.pattern)))
            expected = _psubscribe_reply(self.pattern)
            reply = _read_exactly(sock, len(expected))
            if reply != expected:
                raise ConnectionRefusedError(f"unexpected reply to PSUBSCRIBE: {reply[:80]!r}")
            sock.settimeout(None)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            return sock
        except OSError as exc:
            sock.close()
            raise BrokerUnavailable(self.broker.url, _socket_reason(exc)) from exc

    def _read_forever(self):
        self._read(self._sock, self._stream)

    def _read(self, sock, stream):
        """Move bytes from ``sock`` to the backlog; reconnect after an outage, or end when a handover is over."""
        put = self.backlog.put
        while not self._stop.is_set():
            paused_since = None
            try:
                while True:
                    chunk = sock.recv(RECV_BYTES)
                    if not chunk:
                        raise ConnectionResetError("connection closed by the broker")
                    waited = put((time.time(), chunk, stream), len(chunk))
                    if waited and paused_since is None:
                        paused_since = waited
            except OSError as exc:
                if self._stop.is_set():
                    return
                sock.close()
                with self._switching:
                    handover = self._handover
                    if handover is not None and handover[0] is sock:
                        let_go = time.monotonic() <= handover[2]
                        put(handover[1].switched(dropped=0 if let_go else None), 0)
                        self._handover = None
                        return
                    self._reconnecting = True
                reason = _socket_reason(exc)
                if paused_since:
                    reason = f"backlog full (--buffer {self.args.buffer:g} MB), then {reason}"
                outage = Reconnection(self.broker, reason, paused_since)
                sock = outage.attempt(self._connect, self._stop)
                if sock is None:
                    return
                with self._switching:
                    self._stream += 1
                    self._sock, stream = sock, self._stream
                    self._reconnecting = False
                put(outage.gap(), 0)

    def close(self):
        self._stop.set()
        handover = self._handover
        for sock in (self._sock, handover and handover[0]):
            if sock is not None:  # wakes its reader thread out of recv
                _shut(sock)
        super().close()
        if self._sock is not None:
            self._sock.close()

    def _on_gap(self):
        """The sockets that ended: their half-read frames go; the one read now keeps its own."""
        self._rest = {self._stream: self._rest.get(self._stream, b"")}

    def _decode_item(self, item):
        """Decode every complete pmessage frame of the bytes read so far; keep the partial tail.

        The hot loop of the whole tool, hence inlined: celery's own messages
        (kombu's envelope starting ``{"body": "<base64 JSON>"``) are decoded
        right here; anything else, or anything that fails, takes the careful
        path of ``_decode_envelope``, which says what is wrong.
        """
        received, chunk, stream = item
        rest = self._rest.get(stream)
        buf = rest + chunk if rest else chunk
        end = len(buf)
        pos = 0
        find = buf.find
        starts = buf.startswith
        head = self._frame_head
        head_len = len(head)
        pending = self._pending
        while pos < end:
            # *4 $8 pmessage $<n> <our pattern> $<n> <channel> $<n> <data>, each line ending in CRLF
            if not starts(head, pos):
                if end - pos < head_len and head.startswith(buf[pos:]):
                    break  # the frame's head is still on its way
                raise ProtocolError(f"unexpected reply from Redis: {bytes(buf[pos:pos + 60])!r}")
            eol = find(b"\r\n", pos + head_len)
            if eol < 0:
                break
            channel = eol + 2
            mark = channel + int(buf[pos + head_len:eol]) + 2
            eol = find(b"\r\n", mark)
            if eol < 0:
                break
            data = eol + 2
            data_end = data + int(buf[mark + 1:eol])
            if data_end + 2 > end:
                break
            pos = data_end + 2
            if starts(b'{"body": "', data):
                quote = find(b'"', data + 10, data_end)
                try:
                    value = loads(a2b_base64(buf[data + 10:quote], strict_mode=True))
                except ValueError:  # binascii.Error and JSONDecodeError both are
                    value = None
                if _is_event(value):
                    value["local_received"] = received
                    pending.append(value)
                    continue
                if type(value) is list and all(map(_is_event, value)):  # task.multi
                    for event in value:
                        event["local_received"] = received
                    pending.extend(value)
                    continue
            self._decode_envelope(buf[data:data_end], received, buf[channel:mark - 2])
        self._rest[stream] = buf[pos:]

    def _decode_envelope(self, data, received, channel):
        """kombu's Redis envelope, read with care: JSON with the (base64) body and its content type."""
        try:
            envelope = loads(data)
            body = envelope["body"]
            if envelope["properties"].get("body_encoding") == "base64":
                body = _b64decode(body)
            content_type = envelope.get("content-type")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            self._pending.append(error_record(_why_not_a_message(exc), len(data), received, channel=_text(channel)))
            return
        self._decode_body(body, content_type, received, len(data), channel=_text(channel))


class ProtocolError(ConnectionError):
    """The Redis byte stream is not what a pattern subscription sends."""


def _text(raw):
    return raw.decode("utf-8", "replace")


def _why_not_a_message(exc):
    if isinstance(exc, ValueError) and not str(exc).startswith("bad base64"):
        return f"not a kombu message: not JSON: {exc}"
    if isinstance(exc, (KeyError, TypeError, AttributeError)):
        return f"not a kombu message: no body or properties ({type(exc).__name__}: {exc})"
    return f"not a kombu message: {exc}"


def _b64decode(text):
    try:
        return a2b_base64(text, strict_mode=True)
    except BinasciiError as exc:
        raise ValueError(f"bad base64 body: {exc}") from None


def _psubscribe_reply(pattern):
    pattern = pattern.encode()
    return b"*3\r\n$10\r\npsubscribe\r\n$%d\r\n%s\r\n:1\r\n" % (len(pattern), pattern)


def _read_exactly(sock, size):
    data = b""
    while len(data) < size:
        more = sock.recv(size - len(data))
        if not more:
            raise ConnectionResetError("connection closed by the broker")
        if more.startswith(b"-") and not data:
            raise ConnectionRefusedError(more.decode("utf-8", "replace").strip().lstrip("-"))
        data += more
    return data


def _socket_reason(exc):
    return str(exc).strip() or type(exc).__name__


# RabbitMQ -------------------------------------------------------------------


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
                outage = Reconnection(self.broker, f"disconnected: {_socket_reason(exc)}")
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


def _shut(sock):
    """Wake whoever is blocked reading ``sock``: it sees the connection closed."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _release(connection):
    try:
        connection.release()
    except Exception:  # already broken: nothing more to free
        pass

