"""Which broker to talk to, and connections to it that fail fast and politely.

Resolution order: ``-b/--broker``, ``$CELOPS_BROKER_URL``, ``$CELERY_BROKER_URL``,
the ``-A`` app's ``broker_url``, then ``redis://localhost:6379/0``. An ``-A``
app also contributes ``broker_transport_options`` (``global_keyprefix``,
``sep``, ``priority_steps``...) and its queue names, whichever URL wins.
"""

import os
import sys
import threading
from urllib.parse import parse_qs, unquote, urlsplit

from celops.core.exits import BrokerUnavailable, CelopsError, MissingDependency, UsageError
from celops.core.redact import redact_url

DEFAULT_URL = "redis://localhost:6379/0"
DEFAULT_TIMEOUT = 5.0

# kombu's defaults for the Redis transport (kombu/transport/redis.py).
REDIS_SEP = "\x06\x16"
REDIS_PRIORITY_STEPS = (0, 3, 6, 9)

_TRANSPORTS = {"redis": "redis", "rediss": "redis", "amqp": "amqp", "amqps": "amqp",
               "pyamqp": "amqp", "librabbitmq": "amqp"}


class Broker:
    """A resolved broker: its URL, transport options, the app's queues, and where it came from."""

    def __init__(self, url, source, transport_options=None, queues=None, app=None):
        self.url = url
        self.source = source
        self.transport_options = dict(transport_options or {})
        self.queues = queues
        self.app = app
        try:
            parts = urlsplit(url)
            self.port = parts.port
        except ValueError as exc:  # a port that is not a number, an unclosed [IPv6 bracket
            raise UsageError(f"bad broker URL {redact_url(url)}: {redact_url(str(exc))}") from None
        self.transport = _TRANSPORTS.get(parts.scheme)
        if self.transport is None:
            raise UsageError(f"unsupported broker URL scheme {parts.scheme!r} in {redact_url(url)} "
                             "(use redis://, rediss://, amqp:// or amqps://)")
        self.host = parts.hostname or "localhost"
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.path = parts.path
        if self.transport == "redis" and self.path.strip("/") and not self.path.strip("/").isdigit():
            raise UsageError(f"bad broker URL {redact_url(url)}: the Redis database must be a number, "
                             f"not {self.path.strip('/')!r}")

    def __repr__(self):
        return f"<Broker {self.redacted_url} from {self.source}>"

    @property
    def redacted_url(self):
        return redact_url(self.url)

    # Redis key layout -------------------------------------------------------

    @property
    def db(self):
        """The Redis database number from the URL path (``/3``) or ``?db=``, default 0."""
        digits = self.path.strip("/")
        return int(digits) if digits.isdigit() else int(self.transport_options.get("db", 0) or 0)

    @property
    def keyprefix(self):
        return self.transport_options.get("global_keyprefix", "") or ""

    @property
    def sep(self):
        return self.transport_options.get("sep", REDIS_SEP)

    @property
    def priority_steps(self):
        return tuple(self.transport_options.get("priority_steps", REDIS_PRIORITY_STEPS))

    def key(self, name):
        """The Redis key of ``name`` with the app's ``global_keyprefix``."""
        return f"{self.keyprefix}{name}"

    def fanout_topic(self, exchange):
        """The PUBLISH channel of a fanout exchange, as kombu's Redis transport names it.

        ``/{db}.EXCHANGE`` by default; ``fanout_prefix`` may be a string of its
        own (``{db}`` is filled in there too) or false (no prefix);
        ``global_keyprefix`` goes in front of it all.
        """
        fanout_prefix = self.transport_options.get("fanout_prefix", True)
        if isinstance(fanout_prefix, str):
            prefix = fanout_prefix
        else:
            prefix = "/{db}." if fanout_prefix else ""
        return self.key(prefix.format(db=self.db) + exchange)

    def priority_keys(self, queue):
        """``(step, key)`` of every priority list of a Redis queue, step 0 on the bare name."""
        return [(step, self.key(f"{queue}{self.sep}{step}" if step else queue))
                for step in self.priority_steps]

    # RabbitMQ ---------------------------------------------------------------

    @property
    def vhost(self):
        """The AMQP virtual host: the URL path without its leading slash, ``/`` when empty."""
        path = self.path[1:] if self.path.startswith("/") else self.path
        return unquote(path) or "/"

    # Connections ------------------------------------------------------------

    @property
    def secure(self):
        return self.url.split(":", 1)[0] in ("rediss", "amqps")

    def wrap_tls(self, sock):
        """TLS for the hand-spoken protocols, honouring ssl_ca_certs, ssl_certfile, ssl_keyfile and
        ssl_cert_reqs=none in the URL query (redis-py's names, for amqps:// too)."""
        import ssl

        query = {key: values[-1] for key, values in parse_qs(urlsplit(self.url).query).items()}
        context = ssl.create_default_context(cafile=query.get("ssl_ca_certs"))
        if query.get("ssl_certfile"):
            context.load_cert_chain(query["ssl_certfile"], query.get("ssl_keyfile"))
        if query.get("ssl_cert_reqs", "").lower() in ("none", "cert_none"):
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context.wrap_socket(sock, server_hostname=self.host)

    def kombu(self, timeout=DEFAULT_TIMEOUT):
        """A connected kombu Connection for either transport; raises BrokerUnavailable."""
        import kombu

        url = self.url.replace("pyamqp://", "amqp://", 1)
        transport_options = dict(self.transport_options)
        if self.transport == "redis":
            transport_options.setdefault("socket_connect_timeout", timeout)

        def connect():
            connection = kombu.Connection(url, connect_timeout=timeout, transport_options=transport_options)
            connection.connect()
            if self.transport == "redis":  # kombu's redis transport connects lazily: prove it
                connection.default_channel.client.ping()
            return connection

        return within(timeout, connect, self.url)


def within(timeout, connect, url):
    """Run ``connect()`` but give up after ``timeout`` seconds, whatever blocks it.

    A DNS lookup or a half-open TCP connect can outlast the client's own
    timeouts; a daemon thread lets the command report 69 on time instead.
    """
    outcome = {}

    def attempt():
        try:
            outcome["value"] = connect()
        except BaseException as exc:  # handed to the caller's thread below
            outcome["error"] = exc

    worker = threading.Thread(target=attempt, name="celops-connect", daemon=True)
    worker.start()
    worker.join(timeout + 0.5)
    if worker.is_alive():
        raise BrokerUnavailable(url, f"no answer within {timeout:g}s")
    if "error" in outcome:
        exc = outcome["error"]
        if isinstance(exc, (KeyboardInterrupt, SystemExit, CelopsError)):
            raise exc  # already in plain words: wrapping it again would say "cannot reach" twice
        if isinstance(exc, ModuleNotFoundError):
            raise MissingDependency(exc.name) from exc  # a missing module is not a broker down
        raise BrokerUnavailable(url, redact_url(_reason(exc))) from exc
    return outcome["value"]


def _reason(exc):
    import socket

    if isinstance(exc, socket.gaierror):
        return f"host not found ({exc.strerror})"
    text = str(exc).strip()
    if exc.__class__.__name__ == "AccessRefused" or "ACCESS_REFUSED" in text:
        return "authentication refused"
    return text or exc.__class__.__name__


def resolve(args, environ=os.environ):
    """The Broker the command's options and environment point at (see module doc)."""
    if getattr(args, "broker", None) == "":
        raise UsageError("empty broker URL (-b ''): is a shell variable unset?")
    app = load_app(args.app) if getattr(args, "app", None) else None
    candidates = [
        (getattr(args, "broker", None), "--broker"),
        (environ.get("CELOPS_BROKER_URL"), "CELOPS_BROKER_URL"),
        (environ.get("CELERY_BROKER_URL"), "CELERY_BROKER_URL"),
        (app_broker_url(app) if app else None, "--app"),
        (DEFAULT_URL, "default"),
    ]
    url, source = next((url, source) for url, source in candidates if url)
    transport_options = app.conf.broker_transport_options if app else {}
    queues = list(app.amqp.queues) if app else None
    return Broker(url, source, transport_options=transport_options, queues=queues, app=app)


def load_app(spec):
    """Import ``MODULE[:ATTR]`` the way ``celery -A`` does, with the cwd importable."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    from celery.app.utils import find_app

    try:
        app = find_app(spec)
    except Exception as exc:
        raise UsageError(f"cannot load app {spec!r}: {type(exc).__name__}: {exc}") from exc
    if not hasattr(app, "conf") or not hasattr(app, "amqp"):
        raise UsageError(f"cannot load app {spec!r}: it names a {type(app).__name__}, not a Celery app")
    return app


def app_broker_url(app):
    """The app's write broker URL with its password (redacted only when shown)."""
    conf = app.conf
    url = conf.broker_write_url or conf.broker_url
    if isinstance(url, (list, tuple)):  # failover lists: the first is the primary
        url = url[0]
    if url and ";" in url:
        url = url.split(";", 1)[0]
    return url or app.connection_for_write().as_uri(include_password=True)
