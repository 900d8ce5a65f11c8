"""Every command as a process: Ctrl-C ends it at once, and no password shows in the process list.

Real subprocesses of bin/, a real SIGINT, real brokers: a private redis-server,
a private RabbitMQ vhost, and a private redis-server stopped with SIGSTOP (a
hung broker: the kernel still accepts connections, nothing answers).
"""

import os
import signal
import subprocess

import psutil
import pytest
import redis
import requests

from celops.core.proctitle import masked_title
from tests.conftest import BIN
from tests.support import RABBIT_API, RABBIT_AUTH, RecordStream, RedisServer, TlsProxy, wait_for

# Far beyond the wait for an interrupted command: an exit within it is "at once", not "at the deadline".
DEADLINE = "30"
EXIT_WAIT = 10


def start(command, *argv):
    return subprocess.Popen([os.path.join(BIN, command), *argv], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def local_ports(process, port):
    """The local ports of ``process``'s established connections to ``port`` on the broker."""
    return {conn.laddr.port for conn in psutil.Process(process.pid).net_connections("tcp")
            if conn.raddr and conn.raddr.port == port and conn.status == psutil.CONN_ESTABLISHED}


def blocked_in_redis(url, commands, proxied=False):
    """Ready when one of the process's Redis connections is in a blocking command (BRPOP, PSUBSCRIBE).

    Behind a TLS proxy Redis sees the proxy's connections, not the process's
    ports: there, a client that is newer than this call counts.
    """
    client = redis.Redis.from_url(url)
    older = {entry["id"] for entry in client.client_list()} if proxied else set()

    def ours(process, entry):
        if proxied:
            return entry["id"] not in older
        ports = local_ports(process, client.connection_pool.connection_kwargs["port"])
        return int(entry["addr"].rsplit(":", 1)[1]) in ports

    def ready(process, stream):
        return any(entry["cmd"] in commands and ours(process, entry) for entry in client.client_list())
    return ready


def consuming_on_rabbitmq(vhost):
    """Ready when one of the process's AMQP channels consumes a queue (a reply or event queue)."""
    def ready(process, stream):
        consumers = requests.get(f"{RABBIT_API}/consumers/{vhost}", auth=RABBIT_AUTH, timeout=10).json()
        ports = local_ports(process, 5672)
        # the API gives channel_details as [] for a channel it has not described yet
        return any(isinstance(consumer.get("channel_details"), dict)
                   and consumer["channel_details"].get("peer_port") in ports for consumer in consumers)
    return ready


def first_record(process, stream):
    """Ready when the process wrote a record (cq-len --watch: connected, and waiting for the next tick)."""
    try:
        stream.until(lambda record: True, timeout=0.2)
        return True
    except AssertionError:
        return False


def declare_celery_queue(url):
    import kombu

    with kombu.Connection(url) as connection:
        kombu.Queue("celery", kombu.Exchange("celery"), "celery", channel=connection.default_channel).declare()


def connected_to(port):
    def ready(process, stream):
        return bool(local_ports(process, port))
    return ready


@pytest.fixture(scope="module")
def hung_redis(tmp_path_factory):
    server = RedisServer(str(tmp_path_factory.mktemp("hung"))).start()
    server.process.send_signal(signal.SIGSTOP)
    yield server
    server.process.send_signal(signal.SIGCONT)
    server.stop()


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory):
    """rediss:// through a TLS proxy to a private redis-server: cctl's kombu path, the others' TLS sockets."""
    workdir = str(tmp_path_factory.mktemp("tls"))
    server = RedisServer(workdir).start()
    with TlsProxy(server.port, workdir) as proxy:
        yield server, f"rediss://127.0.0.1:{proxy.port}/0?ssl_ca_certs={proxy.cert}"
    server.stop()


LIVE = [("cctl", "ping"), ("cev-dump",), ("cev-cam", "--live"), ("cq-len", "--watch", "1")]
ONE_SHOT = [("cctl", "ping"), ("cq-ls",), ("cq-len",), ("cq-peek", "celery"), ("cq-purge", "-f", "-Q", "celery"),
            ("cev-dump",), ("cev-cam", "--live")]
SCENARIOS = ([pytest.param("redis", argv, id=f"redis-{argv[0]}") for argv in LIVE]
             + [pytest.param("amqp", argv, id=f"amqp-{argv[0]}") for argv in LIVE]
             + [pytest.param("rediss", argv, id=f"rediss-{argv[0]}") for argv in LIVE]
             + [pytest.param("stalling", argv, id=f"stalling-redis-{argv[0]}") for argv in LIVE]
             + [pytest.param("hung", argv, id=f"hung-redis-{argv[0]}") for argv in ONE_SHOT])


@pytest.fixture
def stalling_redis(tmp_path):
    """A private redis-server that the test stops (SIGSTOP) once the command waits on it."""
    server = RedisServer(str(tmp_path / "stalling")).start()
    yield server
    server.process.send_signal(signal.SIGCONT)
    server.stop()


@pytest.mark.parametrize("broker, argv", SCENARIOS)
def test_ctrl_c_ends_every_command_at_once(request, broker, argv):
    """SIGINT while waiting on the broker: exit 130 at once, long before -t, with no traceback.

    "stalling": the broker hangs after the command started waiting, so
    whatever cleanup follows the Ctrl-C gets no answer either.
    """
    stalling = request.getfixturevalue("stalling_redis") if broker == "stalling" else None
    if broker in ("redis", "stalling"):
        url = stalling.url() if stalling else request.getfixturevalue("fresh_redis_url")
        ready = first_record if argv[0] == "cq-len" else blocked_in_redis(
            url, {"brpop"} if argv[0] == "cctl" else {"psubscribe"})
    elif broker == "rediss":
        server, url = request.getfixturevalue("tls_redis")
        ready = first_record if argv[0] == "cq-len" else blocked_in_redis(
            server.url(), {"brpop"} if argv[0] == "cctl" else {"psubscribe"}, proxied=True)
    elif broker == "amqp":
        vhost = request.getfixturevalue("rabbit_vhost")
        url = vhost.url()
        ready = first_record if argv[0] == "cq-len" else consuming_on_rabbitmq(vhost.name)
    else:
        server = request.getfixturevalue("hung_redis")
        url = server.url()
        ready = connected_to(server.port)
    if ready is first_record:  # cq-len lists only queues that exist: give it one
        declare_celery_queue(server.url() if broker == "rediss" else url)
    process = start(*argv, "-b", url, "-t", DEADLINE)
    stream = RecordStream(process)
    try:
        wait_for(lambda: process.poll() is not None or ready(process, stream), 20,
                 f"{' '.join(argv)} waiting on {broker}")
        assert process.poll() is None, stream.stderr()
        if stalling:
            stalling.process.send_signal(signal.SIGSTOP)
        process.send_signal(signal.SIGINT)
        assert stream.finish(timeout=EXIT_WAIT) == 130, stream.stderr()
        assert "Traceback" not in stream.stderr()
        if broker == "redis" and argv[0] == "cctl":  # cleaned up all the same: no binding left for workers
            assert redis.Redis.from_url(url).smembers("_kombu.binding.reply.celery.pidbox") == set()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_masked_title_hides_each_url_password():
    title = "python -m celops.commands cq-len -b redis://:pw@h/0 --management-url=http://u:pw2@h:15672"
    masked = {"redis://:pw@h/0": "redis://:***@h/0",
              "--management-url=http://u:pw2@h:15672": "--management-url=http://u:***@h:15672"}
    assert masked_title(title, masked) == \
        "python -m celops.commands cq-len -b redis://:***@h/0 --management-url=http://u:***@h:15672"


@pytest.mark.parametrize("broker, argv", [
    ("redis", ("cq-len", "--watch", "1")),
    ("redis", ("cev-cam", "--live")),
    ("amqp", ("cq-len", "--watch", "1", "--management-url", "http://guest:guest@127.0.0.1:15672")),
], ids=["redis-cq-len", "redis-cev-cam", "amqp-cq-len-management-url"])
def test_no_password_in_the_process_list(request, broker, argv):
    """A long-running command shows ``***`` to ps where its command line had a password."""
    if broker == "redis":  # the default user takes any password: one that must not show
        url = request.getfixturevalue("fresh_redis_url").replace("redis://", "redis://default:s3cret@")
        secret = "s3cret"
        ready = first_record if argv[0] == "cq-len" else blocked_in_redis(url, {"psubscribe"})
    else:
        url, secret, ready = request.getfixturevalue("rabbit_vhost").url(), ":guest@", first_record
    if ready is first_record:  # cq-len lists only queues that exist: give it one
        declare_celery_queue(url)
    process = start(*argv, "-b", url)
    stream = RecordStream(process)
    try:
        wait_for(lambda: process.poll() is not None or ready(process, stream), 20, f"{' '.join(argv)} running")
        assert process.poll() is None, stream.stderr()
        with open(f"/proc/{process.pid}/cmdline", "rb") as cmdline:
            shown = cmdline.read().decode()
        listed = subprocess.run(["ps", "-ww", "-o", "args=", "-p", str(process.pid)], capture_output=True, text=True,
                                check=True).stdout
        for title in (shown, listed):
            assert secret not in title and argv[0] in title and ":***@" in title, title
        assert title.count(":***@") == 1 + ("--management-url" in argv)
    finally:
        process.kill()
        process.wait()
