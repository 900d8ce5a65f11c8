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
    master_host, master_port = named_master(broker, endpoint, timeout)
    parts = urlsplit(endpoint.url)
    credentials = ""
    if parts.password is not None:
        credentials = f"{parts.username or ''}:{parts.password}@"
    elif parts.username:
        credentials = f"{parts.username}@"
    host = f"[{master_host}]" if ":" in master_host else quote(master_host, safe="")
    query = "&".join(item for item in parts.query.split("&") if item.startswith("ssl_"))
    scheme = "rediss" if broker.secure else "redis"
    return urlunsplit((scheme, f"{credentials}{host}:{master_port}", parts.path, query, ""))


def named_master(broker, endpoint, timeout):
    """``(host, port)`` of the master as the Sentinel at ``endpoint`` names it now; BrokerUnavailable if it can't."""
    from celops.core.broker import within
    from celops.core.resp import Redis

    name = broker.master_name
    password = broker.sentinel_password
    parts = urlsplit(endpoint.url)
    host, port = parts.hostname or "localhost", parts.port or DEFAULT_SENTINEL_PORT
    wrap = broker.wrap_tls if endpoint.scheme == "sentinels" else None

    def ask():
        sock = socket.create_connection((host, port), timeout=timeout)
        try:
            sock.settimeout(max(timeout, 1.0))
            if wrap is not None:
                sock = wrap(sock)
            client = Redis(sock, endpoint.url)
            commands = ([("AUTH", password)] if password else []) + [("SENTINEL", "get-master-addr-by-name", name)]
            replies = client.pipeline(commands)
            for answer in replies:
                if isinstance(answer, Exception):
                    raise ConnectionError(_sentinel_refusal(str(answer)))
            return replies[-1]
        finally:
            sock.close()

    reply = within(timeout, ask, endpoint.url)
    if not reply:
        raise BrokerUnavailable(endpoint.url, f"the Sentinel knows no master named {name!r}")
    return reply[0].decode(), int(reply[1])


def still_master(broker, client, timeout):
    """Raise BrokerUnavailable unless ``client``'s Redis is still the master: its ROLE says so and the first
    Sentinel that answers still names it (after SENTINEL FAILOVER the old master stays a master for seconds)."""
    check_master(client.call("ROLE"), client.url)
    parts = urlsplit(client.url)
    for endpoint in broker.endpoints:
        try:
            named = named_master(broker, endpoint, timeout)
        except BrokerUnavailable:
            continue
        if named != (parts.hostname, parts.port):
            raise BrokerUnavailable(client.url, f"no longer the master: the Sentinels name {named[0]}:{named[1]}")
        return


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
