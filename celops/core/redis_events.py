"""cev-dump's and cev-cam's Redis event source: PSUBSCRIBE on a raw socket (see events.py), Sentinel failover
followed by reading the demoted master until it lets go."""

import socket
import threading
import time
from binascii import Error as BinasciiError
from binascii import a2b_base64

from orjson import loads

from celops.core.events import EventSource, error_record, is_event, socket_reason
from celops.core.exits import BrokerUnavailable
from celops.core.reconnect import Reconnection

RECV_BYTES = 1 << 22
MASTER_CHECK_EVERY = 0.5  # seconds between ROLE checks of a master found through Sentinel
HANDOVER_LIMIT = 30.0  # seconds a demoted master is read at most (Redis drops its clients about 10 s after)


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
                    if client is not None:
                        client.close()  # the old master's: one connection per check, not one more per failover
                    client = Redis.connect_in_use(self.broker, self.connect_timeout)  # checks ROLE too
                self.broker.transport.still_master(client, self.connect_timeout)
            except BrokerUnavailable as exc:
                if client is not None:
                    client.close()
                client = None
                with self._switching:
                    if self._handover is None and not self._reconnecting:
                        self._hand_over(exc.reason)
        if client is not None:
            client.close()

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
        from celops.core.resp import Redis, packed

        client = Redis.connect(self.broker, self.connect_timeout)
        sock = client.sock
        try:
            sock.settimeout(self.connect_timeout)
            sock.sendall(packed(("PSUBSCRIBE", self.pattern)))
            expected = _psubscribe_reply(self.pattern)
            reply = _read_exactly(sock, len(expected))
            if reply != expected:
                raise ConnectionRefusedError(f"unexpected reply to PSUBSCRIBE: {reply[:80]!r}")
            sock.settimeout(None)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            return sock
        except OSError as exc:
            sock.close()
            raise BrokerUnavailable(self.broker.url, socket_reason(exc)) from exc

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
                reason = socket_reason(exc)
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
                if is_event(value):
                    value["local_received"] = received
                    pending.append(value)
                    continue
                if type(value) is list and all(map(is_event, value)):  # task.multi
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


def _shut(sock):
    """Wake whoever is blocked reading ``sock``: it sees the connection closed."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


