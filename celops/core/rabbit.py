"""The RabbitMQ management HTTP API (port 15672), through requests."""

from urllib.parse import quote, urlsplit, urlunsplit

from celops.core.exits import BrokerUnavailable
from celops.core.redact import redact_url

DEFAULT_PORT = 15672


def add_management_option(parser):
    """``--management-url``: declared once for every command that reads RabbitMQ queues."""
    parser.add_argument(
        "--management-url", metavar="URL", type=management_url,
        help="RabbitMQ management API, e.g. http://user:pass@host:15672 "
             "(default: the broker's host on port 15672 with the broker's credentials)")


def management_url(text):
    """An http(s):// URL with a host, or a usage error in plain words (argparse type)."""
    import argparse

    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 -- raises on a port that is not a number
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"bad URL {redact_url(text)!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(
            f"{redact_url(text)!r} is not a management API URL: give http(s)://[USER:PASS@]HOST[:PORT]")
    return text


class Management:
    """A thin client for the few management endpoints celops needs."""

    def __init__(self, broker, url=None, timeout=5.0):
        import requests

        parts = urlsplit(url or f"http://{broker.host}:{DEFAULT_PORT}")
        self.base = urlunsplit((parts.scheme, parts.hostname + (f":{parts.port}" if parts.port else ""),
                                parts.path.rstrip("/"), "", ""))
        if not self.base.endswith("/api"):
            self.base += "/api"
        self.vhost = broker.vhost
        self.timeout = timeout
        self.session = requests.Session()
        self.session.auth = (parts.username or broker.username or "guest",
                             parts.password or broker.password or "guest")

    def request(self, method, path, **kwargs):
        """Call the API; any transport failure or refusal raises BrokerUnavailable."""
        import requests

        url = f"{self.base}/{path}"
        try:
            response = self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise BrokerUnavailable(url, f"management API: {type(exc).__name__}") from exc
        if response.status_code in (401, 403):
            raise BrokerUnavailable(url, "management API: authentication refused")
        return response

    def get(self, path, **params):
        response = self.request("GET", path, params=params)
        if response.status_code == 404:
            return None
        if not response.ok:
            raise BrokerUnavailable(response.url, f"management API: HTTP {response.status_code}")
        return response.json()

    def vhost_path(self, *parts):
        """``queues/<vhost>/<name>`` with every part percent-encoded (``/`` is ``%2F``)."""
        return "/".join(quote(part, safe="") for part in (parts[0], self.vhost, *parts[1:]))

    def queues(self, columns=None, **params):
        """Every queue of the broker's vhost, as the API describes them (``params``: e.g. lengths_age)."""
        if columns:
            params["columns"] = ",".join(columns)
        return self.get(self.vhost_path("queues"), **params) or []

    def get_messages(self, queue, count):
        """Up to ``count`` messages from the head of ``queue``, rejected with requeue (see cq-peek CAVEATS)."""
        response = self.request("POST", self.vhost_path("queues", queue, "get"),
                                json={"count": count, "ackmode": "reject_requeue_true", "encoding": "base64"})
        if response.status_code == 404:
            return []
        if not response.ok:
            raise BrokerUnavailable(response.url, f"management API: HTTP {response.status_code}: {response.text[:200]}")
        return response.json()
