"""Which broker to talk to, and connections to it that fail fast and politely.

Resolution order: ``-b/--broker``, ``$CELOPS_BROKER_URL``, ``$CELERY_BROKER_URL``,
the ``-A`` app's ``broker_url``, then ``redis://localhost:6379/0``. An ``-A``
app also contributes ``broker_transport_options`` (``global_keyprefix``,
``sep``, ``priority_steps``...) and its queue names, whichever URL wins.
"""

import os
import sys
import threading
from collections import namedtuple
from urllib.parse import parse_qs, parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from celops.core.exits import BrokerUnavailable, CelopsError, ConfigError, MissingDependency, UsageError
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

    @property
    def tls(self):
        """The URL's TLS options, read once here for every client (the lean ones and kombu's alike).

        redis-py's names, for amqps:// too: ``ssl_ca_certs`` (trust the CAs in
        that file instead of the system's), ``ssl_certfile``/``ssl_keyfile`` (a
        client certificate) and ``ssl_cert_reqs`` (``required``, the default,
        or ``none``: no certificate or host name check). Without them the
        broker's certificate is checked against the system CAs and its host name.
        """
        query = {key: values[-1] for key, values in parse_qs(urlsplit(self.url).query).items()
                 if key.startswith("ssl_")}
        unknown = sorted(set(query) - set(TLS_OPTIONS))
        if unknown:
            raise UsageError(f"unknown TLS option {unknown[0]!r} in {self.redacted_url} "
                             f"(celops knows {', '.join(TLS_OPTIONS)})")
        cert_reqs = query.get("ssl_cert_reqs", "required").lower().removeprefix("cert_")
        if cert_reqs not in ("required", "optional", "none"):
            raise UsageError(f"bad ssl_cert_reqs={query['ssl_cert_reqs']!r} in {self.redacted_url} "
                             "(use required or none)")
        return TlsOptions(query.get("ssl_ca_certs"), query.get("ssl_certfile"), query.get("ssl_keyfile"),
                          verify=cert_reqs != "none")

    def tls_context(self):
        """An ``ssl.SSLContext`` from ``tls``; a CA or certificate file that can't be used is a ConfigError."""
        import ssl

        tls = self.tls
        try:
            context = ssl.create_default_context(cafile=tls.cafile)
            if tls.certfile:
                context.load_cert_chain(tls.certfile, tls.keyfile)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot use the TLS files in {self.redacted_url}: {exc}") from None
        if not tls.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def wrap_tls(self, sock):
        """TLS for the hand-spoken protocols (resp, amqpwire), as ``tls`` says."""
        return self.tls_context().wrap_socket(sock, server_hostname=self.host)

    def kombu_ssl(self):
        """``tls`` as kombu's ``ssl`` argument: redis-py's SSLConnection options, or py-amqp's.

        Never kombu's own reading of the URL: on rediss:// without options it
        turns verification off (with a warning nobody sees), and on amqps://
        it hands redis-py's names to py-amqp, which refuses them.
        """
        import ssl

        if not self.secure:
            return False
        self.tls_context()  # the same checks of the files, in the same words
        tls = self.tls
        if self.transport == "redis":
            return {"ssl_cert_reqs": "required" if tls.verify else "none", "ssl_ca_certs": tls.cafile,
                    "ssl_certfile": tls.certfile, "ssl_keyfile": tls.keyfile, "ssl_check_hostname": tls.verify}
        options = {"cert_reqs": ssl.CERT_REQUIRED if tls.verify else ssl.CERT_NONE, "ca_certs": tls.cafile,
                   "certfile": tls.certfile, "keyfile": tls.keyfile}
        if tls.verify:  # py-amqp checks the host name exactly when it has one (kombu fills in a None)
            options["server_hostname"] = self.host
        return options

    def kombu(self, timeout=DEFAULT_TIMEOUT):
        """A connected kombu Connection for either transport; raises BrokerUnavailable.

        One attempt, no retry: kombu's ``connect()`` retries once after two
        seconds, so a refused port took 2.2 s to report whatever -t said.
        """
        import kombu

        parts = urlsplit(self.url.replace("pyamqp://", "amqp://", 1))
        query = [(key, value) for key, value in parse_qsl(parts.query, keep_blank_values=True)
                 if not key.startswith("ssl_")]  # TLS goes in ``ssl=``, read by ``tls``
        url = urlunsplit(parts._replace(query=urlencode(query)))
        transport_options = dict(self.transport_options)
        if self.transport == "redis":
            transport_options.setdefault("socket_connect_timeout", timeout)
        ssl_options = self.kombu_ssl()

        def connect():
            connection = kombu.Connection(url, connect_timeout=timeout, ssl=ssl_options,
                                          transport_options=transport_options)
            connection.ensure_connection(max_retries=0, reraise_as_library_errors=False)
            if self.transport == "redis":  # kombu's redis transport connects lazily: prove it
                connection.default_channel.client.ping()
            return connection

        return within(timeout, connect, self.url)


TLS_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs")


# A CA file to trust instead of the system's, a client certificate and key (paths or None), check or not.
TlsOptions = namedtuple("TlsOptions", "cafile certfile keyfile verify")


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
    untrusted = _certificate_failure(exc)
    if untrusted is not None:
        advice = ("connect by a name the certificate lists" if "mismatch" in untrusted
                  else "add ?ssl_ca_certs=FILE to trust the CA that signed it")
        return f"the broker's TLS certificate is not trusted (CERTIFICATE_VERIFY_FAILED: {untrusted}); {advice}"
    return text or exc.__class__.__name__


def _certificate_failure(exc):
    """Why the peer's certificate was refused, from ``exc`` or what it wraps (redis-py wraps it); else None."""
    import ssl

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ssl.SSLCertVerificationError):
            return exc.verify_message or exc.reason
        exc = exc.__cause__ or exc.__context__
    return None


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
