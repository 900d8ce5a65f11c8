"""A minimal Redis client: one socket, pipelined commands, hiredis parsing (cq-*, cctl, cev-dump's connect).

Why not redis-py: version 8 takes about 0.25 s just to import (it pulls in
asyncio and its observability layer), most of cq-len's 0.35 s budget from a
cold start, and the commands need only pipelines of plain commands.
hiredis (redis-py's own optional parser) does the parsing.
"""

import re
import socket

from celops.core.exits import BrokerUnavailable, NoPermission

DEFAULT_PORT = 6379


class ReplyError(Exception):
    """An error reply from Redis (``-ERR ...``); pipelines return these in place of a value."""


def refusal(command, reply, username):
    """A NOPERM reply (Redis ACL) as a NoPermission naming the user and the command it may not run.

    Redis names the refused command in quotes when it knows it (a script's
    inner command, a SCAN); otherwise it is the command that was sent.
    """
    user = repr(username) if username else "default"
    named = re.search(r"'([a-z|]+)' command", str(reply))
    if not named and re.search(r"\b(key|channel)s?\b", str(reply)):
        return NoPermission(f"the Redis user {user} may not touch a key or channel that {command[0]} needs (ACL): "
                            f"{reply}")
    name = (named.group(1) if named else str(command[0])).upper()
    return NoPermission(f"the Redis user {user} may not run the {name} command (ACL): ask for +{name.lower()} "
                        f"or use another user ({reply})")


def packed(command):
    """``command`` (bytes, str, int or float arguments) in RESP, as hiredis's ``pack_command`` writes it.

    Not hiredis's: it copies a command's bytes over and over as it grows
    (3.6 ms for an LPUSH of 1,000 messages of 1 KB, 0.2 ms here), and cq-move
    writes such commands.
    """
    parts = [b"*%d\r\n" % len(command)]
    for argument in command:
        if argument.__class__ is not bytes:
            argument = _argument_bytes(argument)
        parts += (b"$%d\r\n" % len(argument), argument, b"\r\n")
    return b"".join(parts)


def _argument_bytes(argument):
    if isinstance(argument, str):
        return argument.encode()
    if isinstance(argument, (int, float)) and not isinstance(argument, bool):
        return repr(argument).encode()
    raise TypeError(f"a Redis command argument is bytes, str, int or float, not {type(argument).__name__}")


class Redis:
    """One connection. ``pipeline(commands)`` is one round trip however many commands it holds."""

    def __init__(self, sock, url, username=None):
        import hiredis

        self.sock = sock
        self.url = url
        self.username = username
        self.reader = hiredis.Reader(replyError=ReplyError)

    @classmethod
    def connect(cls, broker, timeout):
        """Connect, AUTH, SELECT and PING within ``timeout``, on the first endpoint of ``broker`` that answers
        (a failover list, or the master Sentinel names: then ROLE must say master); raises BrokerUnavailable."""
        import hiredis  # noqa: F401  (first: a missing parser is a missing dependency, whatever the broker says)

        return broker.connect(timeout, lambda: cls.connect_in_use(broker, timeout))

    @classmethod
    def connect_in_use(cls, broker, timeout):
        """``connect`` to the endpoint in use only (no failover, no Sentinel question): for side checks."""
        from celops.core.broker import within

        # read now, on this thread: ``within`` may give up on a slow host while its thread still runs
        url, host, port, socket_path = broker.url, broker.host, broker.port or DEFAULT_PORT, broker.socket_path
        username, password, db, via_sentinel = broker.username, broker.password, broker.db, broker.sentinel
        wrap = broker.wrap_tls if broker.secure else None

        def connect():
            if socket_path:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(timeout)
                try:
                    sock.connect(socket_path)
                except OSError:
                    sock.close()
                    raise
            else:
                sock = socket.create_connection((host, port), timeout=timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(max(timeout, 1.0))
            if wrap is not None:
                sock = wrap(sock)
            client = cls(sock, url, username)
            setup = []
            if password is not None:
                setup.append(("AUTH", *([username] if username else []), password))
            if db:
                setup.append(("SELECT", db))
            checks = [("ROLE",)] if via_sentinel else []
            replies = client.pipeline([*setup, *checks, ("PING",)])
            for reply in replies:
                if isinstance(reply, NoPermission):
                    client.close()
                    raise reply
                if isinstance(reply, ReplyError):
                    client.close()
                    refused = str(reply).startswith(("WRONGPASS", "NOAUTH", "ERR invalid password"))
                    raise ConnectionError("authentication refused" if refused else str(reply))
            if via_sentinel:
                from celops.core.sentinel import check_master

                try:
                    check_master(replies[len(setup)], url)
                except BaseException:
                    client.close()
                    raise
            return client

        return within(timeout, connect, url)

    def pipeline(self, commands, timeout=None):
        """Send every command at once and read every reply; error replies come back as ReplyError,
        NOPERM ones (ACL) as NoPermission.

        ``timeout`` overrides the socket timeout for this round trip (a BRPOP
        that waits longer than the connect timeout needs it).
        """
        commands = list(commands)
        if self.sock is None:
            raise BrokerUnavailable(self.url, "the connection was dropped after an interrupted command")
        if timeout is not None:
            self.sock.settimeout(timeout)
        try:
            self.sock.sendall(b"".join(packed(command) for command in commands))
            replies = []
            while len(replies) < len(commands):
                reply = self.reader.gets()
                if reply is False:
                    data = self.sock.recv(1 << 16)
                    if not data:
                        raise ConnectionError("connection closed by the server")
                    self.reader.feed(data)
                elif isinstance(reply, ReplyError) and str(reply).startswith("NOPERM"):
                    replies.append(refusal(commands[len(replies)], reply, self.username))
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
        return self.raised(self.pipeline(commands, timeout=timeout))

    @staticmethod
    def raised(replies):
        """``replies``, unless one is an error reply: then the first is raised."""
        for reply in replies:
            if isinstance(reply, (ReplyError, NoPermission)):
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
