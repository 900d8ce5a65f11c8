"""TLS on every path: each command, on rediss:// and amqps://, behind a proxy with a self-signed certificate.

Untrusted (no options): exit 69, saying the certificate is not trusted.
Trusted with ?ssl_ca_certs=<the proxy's certificate>: the command works.
The workers talk to the broker directly; only the command goes through the proxy.
"""

import pytest

from celops.core.broker import Broker
from celops.core.exits import BrokerUnavailable, ConfigError, UsageError
from tests.conftest import run_bin
from tests.support import TlsProxy

# argv after -b URL, and the exit status when it works (cctl ping: 0 with our worker answering)
COMMANDS = {
    "cq-ls": ["cq-ls"],
    "cq-len": ["cq-len", "celery"],
    "cq-peek": ["cq-peek", "celery"],
    "cq-purge --dry-run": ["cq-purge", "-Q", "celery", "--dry-run"],
    "cctl ping": ["cctl", "ping", "-d", "WORKER"],
    "cev-dump": ["cev-dump", "--duration", "0.5"],
    "cev-dump --wakeup": ["cev-dump", "--wakeup", "--type", "worker-heartbeat", "--limit", "1"],
}


@pytest.fixture(scope="module", params=["rediss", "amqps"])
def secured(request, redis_server, rabbit_vhost, tmp_path_factory):
    """``(scheme, URL through the proxy, proxy, worker)``: a worker on the broker behind a TLS proxy."""
    from tests.support import Worker

    workdir = str(tmp_path_factory.mktemp("tls"))
    if request.param == "rediss":
        plain, port, path = redis_server.url(63), redis_server.port, "/63"
    else:
        plain, port, path = rabbit_vhost.url(), 5672, "/" + rabbit_vhost.url().rsplit("/", 1)[1]
    worker = Worker(plain, logdir=workdir).start()
    try:
        with TlsProxy(port, workdir) as proxy:
            credentials = "guest:guest@" if request.param == "amqps" else ""
            yield request.param, f"{request.param}://{credentials}127.0.0.1:{proxy.port}{path}", proxy, worker
    finally:
        worker.stop()


def argv(name, url, worker):
    command, *args = COMMANDS[name]
    return [command, "-b", url, *(worker.hostname if arg == "WORKER" else arg for arg in args)]


@pytest.mark.parametrize("name", COMMANDS)
def test_an_untrusted_certificate_is_refused(secured, name):
    scheme, url, proxy, worker = secured
    result = run_bin(*argv(name, url, worker), "-t", "3")
    assert result.status == 69, result
    (line,) = result.stderr.splitlines()
    assert "TLS certificate is not trusted" in line and "CERTIFICATE_VERIFY_FAILED" in line, result
    assert result.stdout == b""


@pytest.mark.parametrize("name", COMMANDS)
def test_ssl_ca_certs_trusts_the_proxy(secured, name):
    scheme, url, proxy, worker = secured
    result = run_bin(*argv(name, f"{url}?ssl_ca_certs={proxy.cert}", worker), "-t", "10")
    assert result.status == 0 and "error" not in result.stderr, result
    if name == "cctl ping":
        assert [r["hostname"] for r in result.records] == [worker.hostname]
    if name == "cev-dump --wakeup":  # the heartbeat the wake-up asked for, sent through kombu over TLS
        assert [r["hostname"] for r in result.records] == [worker.hostname]


def test_kombu_connections_check_the_certificate(secured):
    """The kombu path itself (cctl on rediss://, --wakeup, cq-* on amqps://): no silent CERT_NONE fallback."""
    scheme, url, proxy, worker = secured
    with pytest.raises(BrokerUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
        Broker(url, "test").kombu(3)
    Broker(f"{url}?ssl_ca_certs={proxy.cert}", "test").kombu(3).release()
    Broker(f"{url}?ssl_cert_reqs=none", "test").kombu(3).release()  # the URL may say otherwise


def test_the_host_name_is_checked(secured, tmp_path):
    """A certificate we trust but made out to another name is refused, on the lean and the kombu path."""
    scheme, url, proxy, worker = secured
    target = 5672 if scheme == "amqps" else int(proxy.target_port)
    with TlsProxy(target, str(tmp_path), names="DNS:elsewhere.invalid") as elsewhere:
        other = f"{url.replace(str(proxy.port), str(elsewhere.port))}?ssl_ca_certs={elsewhere.cert}"
        with pytest.raises(BrokerUnavailable, match="mismatch, certificate is not valid"):
            Broker(other, "test").kombu(3)
        result = run_bin(*argv("cq-len", other, worker), "-t", "3")
    assert result.status == 69 and "mismatch, certificate is not valid" in result.stderr, result


@pytest.mark.parametrize("query, error", [
    ("ssl_cert_reqs=maybe", UsageError),
    ("ssl_ca_cert=/x.pem", UsageError),  # a typo must not turn checking off, or be ignored
    ("ssl_ca_certs=/nonexistent/ca.pem", ConfigError),
])
def test_bad_tls_options_are_said_before_connecting(query, error):
    for scheme in ("rediss", "amqps"):
        broker = Broker(f"{scheme}://127.0.0.1:1/0?{query}", "test")
        with pytest.raises(error):
            broker.kombu(1)
        with pytest.raises(error):
            broker.tls_context()
