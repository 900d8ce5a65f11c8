"""Just enough AMQP 0-9-1 for a pidbox session, cheap to import.

A ``cctl ping`` on RabbitMQ is mostly interpreter start-up, and importing
py-amqp (vine, logging, ssl, platform, typing, decimal...) took about a third
of it. A session needs a handful of methods: connect, open a channel, declare
and bind, consume, publish, receive, delete, close. Those are spoken here
straight over a socket, as ``resp.py`` does for Redis. Everything long-lived
(cev-dump's event queues) stays on kombu and py-amqp.

Frames, methods and field tables follow the AMQP 0-9-1 spec with RabbitMQ's
errata for table types (as py-amqp's ``serialization.py`` reads them).
"""

import socket
from struct import Struct, pack, unpack_from

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
FRAME_METHOD, FRAME_HEADER, FRAME_BODY = 1, 2, 3
FRAME_END = 0xCE
FRAME_HEAD = Struct(">BHI")
FRAME_MAX = 131072  # what we offer; the server may lower it in Tune
CHANNEL = 1  # the one channel a session uses

# (class id, method id) of the methods used here, packed as they start a method frame.
START, START_OK, TUNE, TUNE_OK, OPEN, OPEN_OK, CLOSE, CLOSE_OK, BLOCKED, UNBLOCKED = (
    pack(">HH", 10, method) for method in (10, 11, 30, 31, 40, 41, 50, 51, 60, 61))
CHANNEL_OPEN, CHANNEL_OPEN_OK, CHANNEL_CLOSE, CHANNEL_CLOSE_OK = (
    pack(">HH", 20, method) for method in (10, 11, 40, 41))
EXCHANGE_DECLARE, EXCHANGE_DECLARE_OK = (pack(">HH", 40, method) for method in (10, 11))
QUEUE_DECLARE, QUEUE_DECLARE_OK, QUEUE_BIND, QUEUE_BIND_OK, QUEUE_DELETE, QUEUE_DELETE_OK = (
    pack(">HH", 50, method) for method in (10, 11, 20, 21, 40, 41))
CONSUME, CONSUME_OK, CANCEL, CANCEL_OK, PUBLISH, DELIVER = (
    pack(">HH", 60, method) for method in (20, 21, 30, 31, 40, 60))
BASIC_CLASS = 60

# Basic properties, in flag order from the high bit: the three a pidbox message has.
CONTENT_TYPE, CONTENT_ENCODING, HEADERS, DELIVERY_MODE, PRIORITY = (1 << 15, 1 << 14, 1 << 13, 1 << 12, 1 << 11)


class Blocked(ConnectionError):
    """RabbitMQ blocked the connection (Connection.Blocked): a memory or disk alarm, nothing published goes on."""

    def __init__(self, reason):
        super().__init__(f"blocked by the broker ({reason or 'a resource alarm'}): RabbitMQ accepts no messages "
                         "until its memory or disk alarm clears")


class AmqpError(ConnectionError):
    """The broker closed the channel or the connection: ``code`` and its reply text."""

    def __init__(self, code, text):
        super().__init__(f"{code} {text}")
        self.code = code


# Field values --------------------------------------------------------------------


def shortstr(text):
    data = text.encode() if isinstance(text, str) else text
    return pack(">B", len(data)) + data


def longstr(text):
    data = text.encode() if isinstance(text, str) else text
    return pack(">I", len(data)) + data


def table(mapping):
    """A field table, as RabbitMQ reads one (ints as signed 32 or 64 bit, floats as doubles)."""
    items = b"".join(shortstr(key) + _field(value) for key, value in (mapping or {}).items())
    return pack(">I", len(items)) + items


def _field(value):
    if isinstance(value, bool):
        return b"t" + pack(">B", value)
    if isinstance(value, int):
        return b"I" + pack(">i", value) if -2 ** 31 <= value < 2 ** 31 else b"l" + pack(">q", value)
    if isinstance(value, float):
        return b"d" + pack(">d", value)
    if isinstance(value, (str, bytes)):
        return (b"S" if isinstance(value, str) else b"x") + longstr(value)
    if isinstance(value, dict):
        return b"F" + table(value)
    if isinstance(value, (list, tuple)):
        items = b"".join(_field(item) for item in value)
        return b"A" + pack(">I", len(items)) + items
    if value is None:
        return b"V"
    raise TypeError(f"cannot send {type(value).__name__} in an AMQP table")


# letter -> struct format of the fixed-size field types ('s' is RabbitMQ's int16)
_FIXED = {"b": ">b", "B": ">B", "s": ">h", "U": ">h", "u": ">H", "I": ">i", "i": ">I",
          "L": ">q", "l": ">q", "f": ">f", "d": ">d", "T": ">Q"}
_FIXED = {letter: Struct(fmt) for letter, fmt in _FIXED.items()}


def parse_table(data, pos=0):
    """Decode the field table at ``pos``; returns ``(dict, position after it)``."""
    (size,) = unpack_from(">I", data, pos)
    pos += 4
    end = pos + size
    result = {}
    while pos < end:
        key_size = data[pos]
        key = data[pos + 1:pos + 1 + key_size].decode("utf-8", "replace")
        result[key], pos = _parse_field(data, pos + 1 + key_size)
    return result, end


def _parse_field(data, pos):
    letter = chr(data[pos])
    pos += 1
    fixed = _FIXED.get(letter)
    if fixed is not None:
        return fixed.unpack_from(data, pos)[0], pos + fixed.size
    if letter in "Sx":
        (size,) = unpack_from(">I", data, pos)
        raw = bytes(data[pos + 4:pos + 4 + size])
        if letter == "S":
            try:
                raw = raw.decode()
            except UnicodeDecodeError:
                pass
        return raw, pos + 4 + size
    if letter == "t":
        return bool(data[pos]), pos + 1
    if letter == "V":
        return None, pos
    if letter == "F":
        return parse_table(data, pos)
    if letter == "A":
        (size,) = unpack_from(">I", data, pos)
        end, pos, items = pos + 4 + size, pos + 4, []
        while pos < end:
            item, pos = _parse_field(data, pos)
            items.append(item)
        return items, end
    if letter == "D":
        scale, value = unpack_from(">Bi", data, pos)
        return value / 10 ** scale, pos + 5
    raise ValueError(f"unknown AMQP field type {letter!r}")


def _shortstr_at(data, pos):
    size = data[pos]
    return data[pos + 1:pos + 1 + size].decode("utf-8", "replace"), pos + 1 + size


# The connection ----------------------------------------------------------------------


class Connection:
    """One connection with one channel; deliveries of our consumer collect in ``inbox``.

    Every synchronous method waits for its reply; deliveries that arrive
    meanwhile are kept. A Connection.Close or Channel.Close from the broker
    raises ``AmqpError``; a lost socket raises ``OSError``.
    """

    def __init__(self, sock, timeout):
        self.sock = sock
        self.timeout = timeout  # for every synchronous method; drain() sets its own
        self.frame_max = FRAME_MAX
        self.inbox = []  # (headers, body) of complete deliveries
        self._buffer = bytearray()
        self._delivery = None  # [headers, expected size, body chunks] while a message comes in

    @classmethod
    def connect(cls, broker, timeout):
        """``open`` on the first endpoint of ``broker``'s failover list that answers, within ``timeout`` each."""
        from celops.core.broker import within

        def attempt():
            host, port, vhost = broker.host, broker.port or (5671 if broker.secure else 5672), broker.vhost
            username, password = broker.username or "guest", broker.password or "guest"
            wrap = broker.wrap_tls if broker.secure else None
            return within(timeout, lambda: cls.open(host, port, username, password, vhost, timeout, wrap), broker.url)

        return broker.connect(timeout, attempt)

    @classmethod
    def open(cls, host, port, username, password, vhost, timeout, wrap=None):
        """Connect, log in (PLAIN) and open the channel; ``wrap(sock)`` adds TLS when given."""
        sock = socket.create_connection((host, port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if wrap is not None:
                sock = wrap(sock)
            connection = cls(sock, timeout)
            connection._handshake(username, password, vhost)
            return connection
        except BaseException:
            sock.close()
            raise

    def _handshake(self, username, password, vhost):
        self.sock.sendall(PROTOCOL_HEADER)
        self._wait(START, channel=0)
        # connection.blocked: under a memory or disk alarm RabbitMQ says so, rather than leaving us waiting
        properties = {"product": "celops", "capabilities": {"authentication_failure_close": True,
                                                             "connection.blocked": True}}
        self._send_method(0, START_OK + table(properties) + shortstr("PLAIN")
                          + longstr(f"\0{username}\0{password}") + shortstr("en_US"))
        tune = self._wait(TUNE, channel=0)
        channel_max, frame_max, _heartbeat = unpack_from(">HIH", tune, 4)
        self.frame_max = min(frame_max or FRAME_MAX, FRAME_MAX)
        # no heartbeats: a session lasts seconds
        self._send_method(0, TUNE_OK + pack(">HIH", channel_max, self.frame_max, 0))
        self._send_method(0, OPEN + shortstr(vhost) + shortstr("") + b"\0")
        self._wait(OPEN_OK, channel=0)
        self._call(CHANNEL_OPEN + shortstr(""), CHANNEL_OPEN_OK)

    # Methods a session uses ---------------------------------------------------------

    def exchange_declare(self, name, kind):
        """A non-durable exchange that is not auto-deleted, as kombu's Mailbox declares its two."""
        self._call(EXCHANGE_DECLARE + pack(">H", 0) + shortstr(name) + shortstr(kind) + b"\0" + table({}),
                   EXCHANGE_DECLARE_OK)

    def queue_declare(self, name, arguments):
        """A non-durable, auto-deleted queue with these ``x-`` arguments."""
        bits = 0b1000  # auto-delete
        self._call(QUEUE_DECLARE + pack(">H", 0) + shortstr(name) + pack(">B", bits) + table(arguments),
                   QUEUE_DECLARE_OK)

    def queue_bind(self, queue, exchange, routing_key):
        self._call(QUEUE_BIND + pack(">H", 0) + shortstr(queue) + shortstr(exchange) + shortstr(routing_key)
                   + b"\0" + table({}), QUEUE_BIND_OK)

    def consume(self, queue):
        """Start a no-ack consumer of ``queue``; returns its tag."""
        bits = 0b10  # no-ack
        reply = self._call(CONSUME + pack(">H", 0) + shortstr(queue) + shortstr("") + pack(">B", bits)
                           + table({}), CONSUME_OK)
        return _shortstr_at(reply, 4)[0]

    def cancel(self, tag):
        self._call(CANCEL + shortstr(tag) + b"\0", CANCEL_OK)

    def queue_delete(self, name):
        self._call(QUEUE_DELETE + pack(">H", 0) + shortstr(name) + b"\0", QUEUE_DELETE_OK)

    def publish(self, exchange, routing_key, body, headers, content_type, content_encoding="utf-8",
                delivery_mode=1, priority=0):
        """Basic.Publish, its content header and body frames, in one write."""
        flags = CONTENT_TYPE | CONTENT_ENCODING | HEADERS | DELIVERY_MODE | PRIORITY
        properties = (shortstr(content_type) + shortstr(content_encoding) + table(headers)
                      + pack(">BB", delivery_mode, priority))
        frames = [_frame(FRAME_METHOD, CHANNEL, PUBLISH + pack(">H", 0) + shortstr(exchange)
                         + shortstr(routing_key) + b"\0"),
                  _frame(FRAME_HEADER, CHANNEL, pack(">HHQH", BASIC_CLASS, 0, len(body), flags) + properties)]
        step = self.frame_max - 8  # frame head and end
        frames += [_frame(FRAME_BODY, CHANNEL, body[start:start + step]) for start in range(0, len(body), step)]
        self.sock.settimeout(self.timeout)
        self.sock.sendall(b"".join(frames))

    def drain(self, timeout):
        """Wait up to ``timeout`` s for a delivery unless one is waiting; returns and empties ``inbox``."""
        if not self.inbox:
            self.sock.settimeout(max(timeout, 0.001))
            try:
                while not self.inbox:
                    self._dispatch(*self._read_frame())
            except socket.timeout:
                pass
        received, self.inbox = self.inbox, []
        return received

    def close(self):
        """Connection.Close, politely, then the socket, whatever the broker says."""
        try:
            self.sock.settimeout(min(self.timeout, 1.0))
            self._send_method(0, CLOSE + pack(">H", 200) + shortstr("bye") + pack(">HH", 0, 0))
            self._wait(CLOSE_OK, channel=0)
        except (OSError, AmqpError):
            pass
        finally:
            self.sock.close()

    # Frames -------------------------------------------------------------------------

    def _call(self, method, reply):
        self.sock.settimeout(self.timeout)
        self._send_method(CHANNEL, method)
        return self._wait(reply)

    def _send_method(self, channel, payload):
        self.sock.sendall(_frame(FRAME_METHOD, channel, payload))

    def _wait(self, method, channel=CHANNEL):
        """Read frames until ``method`` arrives on ``channel``; returns its payload."""
        while True:
            kind, on, payload = self._read_frame()
            if kind == FRAME_METHOD and on == channel and payload[:4] == method:
                return payload
            self._dispatch(kind, on, payload)

    def _dispatch(self, kind, channel, payload):
        """Deliveries go to ``inbox``, a close from the broker raises; the rest is of no interest."""
        if kind == FRAME_METHOD:
            method = payload[:4]
            if method == DELIVER:
                self._delivery = [None, 0, []]
            elif method == BLOCKED:
                raise Blocked(_shortstr_at(payload, 4)[0])
            elif method in (CLOSE, CHANNEL_CLOSE):
                code, pos = unpack_from(">H", payload, 4)[0], 6
                text = _shortstr_at(payload, pos)[0]
                try:
                    self._send_method(channel, CLOSE_OK if method == CLOSE else CHANNEL_CLOSE_OK)
                except OSError:
                    pass
                raise AmqpError(code, text)
        elif kind == FRAME_HEADER and self._delivery is not None:
            size, flags = unpack_from(">QH", payload, 4)
            self._delivery[:2] = _headers(payload, flags), size
            self._deliver_if_complete()
        elif kind == FRAME_BODY and self._delivery is not None:
            self._delivery[2].append(payload)
            self._deliver_if_complete()

    def _deliver_if_complete(self):
        headers, size, chunks = self._delivery
        if sum(map(len, chunks)) >= size:
            self.inbox.append((headers, b"".join(chunks)))
            self._delivery = None

    def _read_frame(self):
        buffer = self._buffer
        while True:
            if len(buffer) >= 7:
                kind, channel, size = FRAME_HEAD.unpack_from(buffer)
                end = 7 + size
                if len(buffer) > end:
                    if buffer[end] != FRAME_END:
                        raise ConnectionError("AMQP frame out of step: no frame-end octet")
                    payload = bytes(buffer[7:end])
                    del buffer[:end + 1]
                    return kind, channel, payload
            chunk = self.sock.recv(FRAME_MAX)
            if not chunk:
                raise ConnectionResetError("connection closed by the broker")
            buffer += chunk


def _frame(kind, channel, payload):
    return FRAME_HEAD.pack(kind, channel, len(payload)) + payload + b"\xce"


def _headers(payload, flags):
    """The ``headers`` property of a content header frame (after content type and encoding)."""
    if not flags & HEADERS:
        return {}
    pos = 14  # class, weight, body size, flags
    for flag in (CONTENT_TYPE, CONTENT_ENCODING):
        if flags & flag:
            pos = _shortstr_at(payload, pos)[1]
    try:
        return parse_table(payload, pos)[0]
    except (ValueError, IndexError):  # a field type we do not know: no ticket, so the reply is dropped
        return {}
