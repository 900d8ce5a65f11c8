"""Redis Sentinel: ask the Sentinels which Redis is the master, as kombu's SentinelChannel does.

``sentinel://[:MASTER_PASSWORD@]HOST:PORT[/DB];sentinel://...`` names the
Sentinels; the master's name comes from ``?master_name=`` or the ``-A`` app's
``broker_transport_options['master_name']``. The password in the URL is the
master's; the Sentinels' own is ``sentinel_kwargs['password']`` (or
``?sentinel_password=``), kept apart as kombu keeps it.

After a failover the old master drops its clients; whoever reconnects goes
through ``Broker.connect`` again, which asks the Sentinels afresh: that is how
every command reconnects to the new master (see ``reconnect.py``).
"""

import socket
from urllib.parse import quote, urlsplit, urlunsplit

from celops.core.exits import BrokerUnavailable

DEFAULT_SENTINEL_PORT = 26379


def master_url(broker, endpoint, timeout):
    """The ``redis://`` (``rediss://`` for sentinels://) URL of the master this Sentinel names.

    Raises BrokerUnavailable naming the Sentinel when it is down, refuses the
    password, or does not know the master.
    """
    from celops.core.broker import within
    from celops.core.resp import Redis, ReplyError

    name = broker.master_name
    password = broker.sentinel_password
    host, port = broker.host, broker.port or DEFAULT_SENTINEL_PORT

    def ask():
        sock = socket.create_connection((host, port), timeout=timeout)
        try:
            sock.settimeout(max(timeout, 1.0))
            if broker.secure:
                sock = broker.wrap_tls(sock)
            client = Redis(sock, endpoint.url)
            commands = ([("AUTH", password)] if password else []) + [("SENTINEL", "get-master-addr-by-name", name)]
            *setup, reply = client.pipeline(commands)
            for answer in [*setup, reply]:
                if isinstance(answer, (ReplyError, Exception)):
                    raise ConnectionError(_sentinel_refusal(str(answer)))
            return reply
        finally:
            sock.close()

    reply = within(timeout, ask, endpoint.url)
    if not reply:
        raise BrokerUnavailable(endpoint.url, f"the Sentinel knows no master named {name!r}")
    master_host, master_port = (part.decode() for part in reply)
    parts = urlsplit(endpoint.url)
    credentials = ""
    if parts.password is not None or parts.username:
        credentials = f"{parts.username or ''}:{parts.password or ''}@" if parts.password is not None \
            else f"{parts.username}@"
    query = "&".join(item for item in parts.query.split("&") if item.startswith("ssl_"))
    scheme = "rediss" if broker.secure else "redis"
    netloc = f"{credentials}{quote(master_host, safe=':[]')}:{master_port}"
    if ":" in master_host:
        netloc = f"{credentials}[{master_host}]:{master_port}"
    return urlunsplit((scheme, netloc, parts.path, query, ""))


def _sentinel_refusal(reply):
    if reply.startswith("NOAUTH"):
        return ("the Sentinel wants a password: give it as broker_transport_options sentinel_kwargs "
                "{'password': ...} or ?sentinel_password=")
    if reply.startswith(("WRONGPASS", "ERR invalid password", "ERR AUTH")):
        return "the Sentinel refused the password (sentinel_kwargs)"
    return f"the Sentinel said: {reply}"


def check_master(role_reply, url):
    """``ROLE`` must say master: right after a failover a Sentinel may still name the demoted one."""
    if not role_reply or role_reply[0] != b"master":
        what = role_reply[0].decode() if role_reply else "unknown"
        raise BrokerUnavailable(url, f"it is a {what}, not the master (a failover under way?)")
