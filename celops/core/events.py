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

The sources themselves, one per transport (``broker.transport.event_source``):

Redis (``redis_events.py``): celery makes ``celeryev`` a fanout exchange there, published with
``PUBLISH {global_keyprefix}/{db}.celeryev/<routing key>``; we PSUBSCRIBE
``{global_keyprefix}/{db}.celeryev/*`` on a raw socket (kombu/transport/redis.py:
``keyprefix_fanout``, ``_get_publish_topic``, ``PrefixedRedisPubSub``).
RabbitMQ (``amqp_events.py``): a queue bound to the ``celeryev`` topic exchange with ``#``, as
celery's Receiver declares it (``celeryev.<uuid>``, 5 s message TTL, 60 s
expiry), or ``--queue NAME``: durable, no TTL, acknowledged only once the
caller has taken its events, so nothing is lost between runs.
"""

import collections
import os
import stat
import sys
import threading
import time

from orjson import loads

from celops import records
from celops.core import cli

DEFAULT_BUFFER_MB = 256
DEFAULT_CONNECT_TIMEOUT = 5.0
CONNECT_TIMEOUT_HELP = (f"give up connecting to the broker after this long (default {DEFAULT_CONNECT_TIMEOUT:g}): "
                        "at start, exit 69; after a disconnect, each attempt to reconnect, retried without end")
EVENT_EXCHANGE = "celeryev"
CELERY_QUEUE_TTL = 5.0  # celery's event_queue_ttl
CELERY_QUEUE_EXPIRES = 60.0  # celery's event_queue_expires
ENABLE_EVENTS_EVERY = 5.0  # as Flower does
READER_SWITCH_INTERVAL = 0.0005


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
            if is_event(event):
                event["local_received"] = received
                pending.append(event)
            else:  # every record has a type: what has none is not passed on as an event
                pending.append(error_record(NO_TYPE, size, received, **where))


NO_TYPE = 'an object without a string "type" is not an event'


def is_event(value):
    return type(value) is dict and value.get("type").__class__ is str


def socket_reason(exc):
    return str(exc).strip() or type(exc).__name__
