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

# URL scheme -> broker kind; every form celery accepts.
_KINDS = {"redis": "redis", "rediss": "redis", "redis+socket": "redis", "sentinel": "redis", "sentinels": "redis",
          "amqp": "amqp", "amqps": "amqp", "pyamqp": "amqp", "librabbitmq": "amqp"}


def split_failover_list(text):
    """``a;b;c`` (celery's failover list in one string) as its URLs, blanks dropped."""
    return [part.strip() for part in text.split(";") if part.strip()]


class Endpoint(namedtuple("Endpoint", "url scheme kind query")):
    """One URL of a failover list, checked: its scheme is one celery knows, its port a number, its db a number."""

    @classmethod
    def parse(cls, url):
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 -- raises on a port that is not a number
        except ValueError as exc:  # a port that is not a number, an unclosed [IPv6 bracket
            raise UsageError(f"bad broker URL {redact_url(url)}: {redact_url(str(exc))}") from None
        kind = _KINDS.get(parts.scheme)
        if kind is None:
            raise UsageError(f"unsupported broker URL scheme {parts.scheme!r} in {redact_url(url)} "
                             "(use redis://, rediss://, redis+socket://, sentinel://, amqp:// or amqps://)")
        database = parts.path.strip("/")
        if kind == "redis" and parts.scheme != "redis+socket" and database and not database.isdigit():
            raise UsageError(f"bad broker URL {redact_url(url)}: the Redis database must be a number, "
                             f"not {database!r}")
        if parts.scheme == "redis+socket" and not parts.path:
            raise UsageError(f"bad broker URL {redact_url(url)}: give the socket's path, "
                             "redis+socket:///run/redis.sock")
        return cls(url, parts.scheme, kind, {key: values[-1] for key, values in parse_qs(parts.query).items()})

    @property
    def sentinel(self):
        return self.scheme in ("sentinel", "sentinels")

    @property
    def redacted(self):
        return redact_url(self.url)


class Broker:
    """A resolved broker: its endpoints (a failover list), transport options, the app's queues, where it came from.

    ``url``, ``host``, ``port``... describe the endpoint in use: the first one
    until ``connect`` has found one that answers (for Sentinel: the master it
    named). ``transport`` is the one object that talks to this kind of broker.
    """

    def __init__(self, url, source, transport_options=None, queues=None, app=None, failover_strategy=None):
        self.source = source
        self.transport_options = dict(transport_options or {})
        self.queues = queues
        self.app = app
        self.trace = None  # --debug: a function that prints each host tried
        self.endpoints = [Endpoint.parse(text) for text in split_failover_list(url)]
        if not self.endpoints:
            raise UsageError(f"empty broker URL list {redact_url(url)!r}")
        kinds = {endpoint.kind for endpoint in self.endpoints}
        if len(kinds) > 1:
            raise UsageError(f"the failover list {redact_url(url)} mixes Redis and RabbitMQ URLs")
        self.kind = kinds.pop()
        self.sentinel = any(endpoint.sentinel for endpoint in self.endpoints)
        if self.sentinel and not all(endpoint.sentinel for endpoint in self.endpoints):
            raise UsageError(f"the failover list {redact_url(url)} mixes Sentinel and plain Redis URLs")
        self.failover_strategy = failover_strategy or "round-robin"
        self.listed_url = ";".join(endpoint.url for endpoint in self.endpoints)
        self.use(self.endpoints[0].url)
        self._transport = None

    def __repr__(self):
        return f"<Broker {redact_url(self.listed_url)} from {self.source}>"

    def use(self, url):
        """Make ``url`` (one endpoint, or the master a Sentinel named) the one in use."""
        parts = urlsplit(url)
        self.url = url
        self.port = parts.port
        self.host = parts.hostname or "localhost"
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.path = parts.path
        self.socket_path = parts.path if parts.scheme == "redis+socket" else None

    @property
    def transport(self):
        """The RedisTransport or RabbitTransport of this broker, created once."""
        if self._transport is None:
            if self.kind == "redis":
                from celops.core.redis_transport import RedisTransport as transport_class
            else:
                from celops.core.rabbit_transport import RabbitTransport as transport_class
            self._transport = transport_class(self)
        return self._transport

    @property
    def redacted_url(self):
        return redact_url(self.url)

    # Failover and Sentinel ----------------------------------------------------

    def connect(self, timeout, attempt):
        """``attempt()`` on each endpoint in failover order until one answers; returns what it returned.

        ``attempt`` connects to the endpoint in use (``self.url``). With
        Sentinel each Sentinel is asked for the master first (see
        ``sentinel.py``). The endpoint that answered stays in use, so that a
        reconnection tries it first; every host tried shows in --debug and,
        when none answered, in the error.
        """
        failures = []
        for endpoint in self.failover_order():
            try:
                if endpoint.sentinel:
                    from celops.core.sentinel import master_url

                    self.use(endpoint.url)
                    self._trace(f"asking Sentinel {endpoint.redacted} for master {self.master_name!r}")
                    self.use(master_url(self, endpoint, timeout))
                else:
                    self.use(endpoint.url)
                self._trace(f"trying {self.redacted_url}")
                return attempt()
            except BrokerUnavailable as exc:
                self._trace(f"{exc.reason}")
                failures.append((endpoint, exc))
        if len(failures) == 1:
            raise failures[0][1]
        tried = "; ".join(f"{endpoint.redacted}: {exc.reason}" for endpoint, exc in failures)
        raise BrokerUnavailable(self.listed_url, f"no host of the failover list answered ({tried})")

    def failover_order(self):
        """The endpoints in the order to try them: the one in use first, then the next ones (round-robin),
        or at random (``broker_failover_strategy`` "shuffle"), or as the app's own strategy function orders them.
        """
        endpoints = list(self.endpoints)
        strategy = self.failover_strategy
        if callable(strategy):
            import itertools

            return list(itertools.islice(strategy(endpoints), len(endpoints)))
        if strategy == "shuffle":
            import random

            random.shuffle(endpoints)
            return endpoints
        current = next((i for i, endpoint in enumerate(endpoints) if endpoint.url == self.url), 0)
        return endpoints[current:] + endpoints[:current]

    @property
    def master_name(self):
        """The Sentinel master name: ``?master_name=`` in the URL, else the transport option ``master_name``."""
        for endpoint in self.endpoints:
            if endpoint.query.get("master_name"):
                return endpoint.query["master_name"]
        name = self.transport_options.get("master_name")
        if not name:
            raise UsageError("a sentinel:// URL needs the master's name: add ?master_name=NAME to the URL, or "
                             "use -A with broker_transport_options={'master_name': NAME}")
        return name

    @property
    def sentinel_password(self):
        """The Sentinels' own password (kombu's ``sentinel_kwargs``), never the master's one of the URL."""
        for endpoint in self.endpoints:
            if endpoint.query.get("sentinel_password"):
                return endpoint.query["sentinel_password"]
        return (self.transport_options.get("sentinel_kwargs") or {}).get("password")

    def _trace(self, message):
        if self.trace is not None:
            self.trace(redact_url(message))

    # Redis key layout -------------------------------------------------------

    @property
    def db(self):
        """The Redis database number from the URL path (``/3``) or ``?db=``, default 0."""
        digits = "" if self.socket_path else self.path.strip("/")
        if digits.isdigit():
            return int(digits)
        query = parse_qs(urlsplit(self.url).query)
        given = (query.get("db") or query.get("virtual_host") or [self.transport_options.get("db", 0)])[-1]
        return int(given or 0)

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
        return self.url.split(":", 1)[0] in ("rediss", "amqps", "sentinels")

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
        if self.kind == "redis":
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
        return self.connect(timeout, lambda: self._kombu_here(timeout))

    def _kombu_here(self, timeout):
        """kombu on the endpoint in use (for Sentinel: the master's redis:// URL, found by ``connect``)."""
        import kombu

        parts = urlsplit(self.url.replace("pyamqp://", "amqp://", 1))
        query = [(key, value) for key, value in parse_qsl(parts.query, keep_blank_values=True)
                 if not key.startswith("ssl_") and key not in CELOPS_QUERY]  # TLS goes in ``ssl=``, read by ``tls``
        url = urlunsplit(parts._replace(query=urlencode(query)))
        transport_options = {key: value for key, value in self.transport_options.items()
                             if key not in ("master_name", "sentinel_kwargs")}
        if self.kind == "redis":
            transport_options.setdefault("socket_connect_timeout", timeout)
        ssl_options = self.kombu_ssl()

        def connect():
            connection = kombu.Connection(url, connect_timeout=timeout, ssl=ssl_options,
                                          transport_options=transport_options)
            connection.ensure_connection(max_retries=0, reraise_as_library_errors=False)
            if self.kind == "redis":  # kombu's redis transport connects lazily: prove it
                connection.default_channel.client.ping()
            return connection

        return within(timeout, connect, self.url)


TLS_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs")
# Query options celops reads itself and never hands to kombu.
CELOPS_QUERY = ("master_name", "sentinel_password")


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
    strategy = app.conf.broker_failover_strategy if app else None
    return Broker(url, source, transport_options=transport_options, queues=queues, app=app,
                  failover_strategy=strategy)


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
    """The app's write broker URL, a failover list joined by ``;``, with its password (redacted only when shown)."""
    conf = app.conf
    url = conf.broker_write_url or conf.broker_url
    if isinstance(url, (list, tuple)):  # a failover list as a list
        url = ";".join(url)
    return url or app.connection_for_write().as_uri(include_password=True)
