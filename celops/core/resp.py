"""A minimal Redis client: one socket, pipelined commands, hiredis parsing (cq-*, cctl, cev-dump's connect).

Why not redis-py: version 8 takes about 0.25 s just to import (it pulls in
asyncio and its observability layer), most of cq-len's 0.35 s budget from a
cold start, and the commands need only pipelines of plain commands.
hiredis (redis-py's own optional parser) does the parsing.
"""

import socket

from celops.core.exits import BrokerUnavailable

DEFAULT_PORT = 6379


class ReplyError(Exception):
    """An error reply from Redis (``-ERR ...``); pipelines return these in place of a value."""


class Redis:
    """One connection. ``pipeline(commands)`` is one round trip however many commands it holds."""

    def __init__(self, sock, url):
        import hiredis

        self.sock = sock
        self.url = url
        self.reader = hiredis.Reader(replyError=ReplyError)
        self.pack = hiredis.pack_command

    @classmethod
    def connect(cls, broker, timeout):
        """Connect, AUTH, SELECT and PING within ``timeout``; raises BrokerUnavailable."""
        from celops.core.broker import within

        def connect():
            sock = socket.create_connection((broker.host, broker.port or DEFAULT_PORT), timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(max(timeout, 1.0))
            if broker.secure:
                sock = broker.wrap_tls(sock)
            client = cls(sock, broker.url)
            setup = []
            if broker.password is not None:
                setup.append(("AUTH", *([broker.username] if broker.username else []), broker.password))
            if broker.db:
                setup.append(("SELECT", broker.db))
            for reply in client.pipeline([*setup, ("PING",)]):
                if isinstance(reply, ReplyError):
                    client.close()
                    refused = str(reply).startswith(("WRONGPASS", "NOAUTH", "ERR invalid password"))
                    raise ConnectionError("authentication refused" if refused else str(reply))
            return client

        return within(timeout, connect, broker.url)

    def pipeline(self, commands, timeout=None):
        """Send every command at once and read every reply; error replies come back as ReplyError.

        ``timeout`` overrides the socket timeout for this round trip (a BRPOP
        that waits longer than the connect timeout needs it).
        """
        commands = list(commands)
        if self.sock is None:
            raise BrokerUnavailable(self.url, "the connection was dropped after an interrupted command")
        if timeout is not None:
            self.sock.settimeout(timeout)
        try:
            self.sock.sendall(b"".join(self.pack(tuple(command)) for command in commands))
            replies = []
            while len(replies) < len(commands):
                reply = self.reader.gets()
                if reply is False:
                    data = self.sock.recv(1 << 16)
                    if not data:
                        raise ConnectionError("connection closed by the server")
                    self.reader.feed(data)
                else:
                    replies.append(reply)
            return replies
        except OSError as exc:
            self.close()
            raise BrokerUnavailable(self.url, str(exc) or type(exc).__name__) from exc
        except BaseException:
            # Ctrl-C in a BRPOP: its reply is still due and would be read as the next command's,
            # after the BRPOP's own wait. The connection is out of step: drop it.
            self.close()
            raise

    def call(self, *command, timeout=None):
        """One command; an error reply raises ReplyError."""
        (reply,) = self.checked(command, timeout=timeout)
        return reply

    def checked(self, *commands, timeout=None):
        """``pipeline`` whose first error reply, if any, is raised."""
        replies = self.pipeline(commands, timeout=timeout)
        for reply in replies:
            if isinstance(reply, ReplyError):
                raise reply
        return replies

    def scan(self, command="SCAN", key=None, match=None, count=1000):
        """Everything SCAN (keys) or HSCAN/SSCAN/ZSCAN of ``key`` yields, cursor by cursor; never KEYS."""
        cursor = b"0"
        options = (("MATCH", match) if match else ()) + ("COUNT", count)
        while True:
            cursor, items = self.call(command, *((key,) if key is not None else ()), cursor, *options)
            yield from items
            if cursor == b"0":
                return

    @property
    def closed(self):
        return self.sock is None

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None
