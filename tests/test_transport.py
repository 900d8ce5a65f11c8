"""The transport layer's pure parts and its URL forms: failover lists, Sentinel URLs, redis+socket://,
the pmessage parser fed at every byte boundary, and amqpwire's Connection.Blocked from recorded frames."""

import argparse
import os
import socket
import struct

import pytest

from celops.core import amqpwire
from celops.core.broker import Broker, app_broker_url
from celops.core.redis_events import RedisEventSource
from celops.core.exits import BrokerUnavailable, UsageError
from tests.conftest import run_bin
from tests.support import RedisServer, free_port, kombu_event_envelope

# URL resolution -------------------------------------------------------------------


def test_a_failover_list_is_a_list_of_endpoints_not_a_bad_port():
    broker = Broker("redis://127.0.0.1:6391;redis://127.0.0.1:6392/2", "test")
    assert [endpoint.url for endpoint in broker.endpoints] == ["redis://127.0.0.1:6391", "redis://127.0.0.1:6392/2"]
    assert (broker.kind, broker.host, broker.port) == ("redis", "127.0.0.1", 6391)


def test_each_amqp_endpoint_keeps_its_own_vhost():
    broker = Broker("amqp://u:p@h1:5672/celops-acc;amqp://u:p@h2:5672/celops-acc", "test")
    assert broker.vhost == "celops-acc"
    broker.use(broker.endpoints[1].url)
    assert (broker.host, broker.vhost) == ("h2", "celops-acc")


@pytest.mark.parametrize("url, words", [
    ("redis://h;amqp://h", "mixes Redis and RabbitMQ"),
    ("sentinel://h:26379;redis://h", "mixes Sentinel and plain Redis"),
    ("redis://h:x", "bad broker URL"),
    ("memcache://h", "unsupported broker URL scheme 'memcache'"),
    ("redis+socket://", "give the socket's path"),
])
def test_bad_lists_are_usage_errors(url, words):
    with pytest.raises(UsageError, match=words):
        Broker(url, "test")


def test_the_app_failover_list_is_kept_whole():
    from celery import Celery

    app = Celery("t", broker=["amqp://h1//", "amqp://h2//"], set_as_current=False)
    assert app_broker_url(app) == "amqp://h1//;amqp://h2//"


def test_round_robin_starts_at_the_endpoint_in_use_and_shuffle_keeps_them_all():
    broker = Broker("redis://a;redis://b;redis://c", "test")
    broker.use("redis://b")
    assert [endpoint.url for endpoint in broker.failover_order()] == ["redis://b", "redis://c", "redis://a"]
    shuffled = Broker("redis://a;redis://b;redis://c", "test", failover_strategy="shuffle")
    assert sorted(endpoint.url for endpoint in shuffled.failover_order()) == ["redis://a", "redis://b", "redis://c"]


def test_sentinel_names_come_from_the_query_or_the_transport_options():
    assert Broker("sentinel://h:26379?master_name=m", "test").master_name == "m"
    broker = Broker("sentinel://:pw@h:26379", "test", {"master_name": "x", "sentinel_kwargs": {"password": "s"}})
    assert (broker.master_name, broker.sentinel_password, broker.password) == ("x", "s", "pw")
    with pytest.raises(UsageError, match="master_name"):
        Broker("sentinel://h:26379", "test").master_name  # noqa: B018


def test_every_host_tried_is_in_the_error_redacted():
    ports = [free_port(), free_port()]
    broker = Broker(";".join(f"redis://:hush@127.0.0.1:{port}/0" for port in ports), "test")
    traced = []
    broker.trace = traced.append
    with pytest.raises(BrokerUnavailable) as caught:
        broker.kombu(1)
    message = str(caught.value)
    assert all(f"127.0.0.1:{port}" in message for port in ports) and "hush" not in message, message
    assert [line for line in traced if line.startswith("trying")] == [
        f"trying redis://:***@127.0.0.1:{port}/0" for port in ports]


def test_redis_plus_socket_for_real(tmp_path):
    path = str(tmp_path / "redis.sock")
    server = RedisServer(str(tmp_path), extra_args=["--unixsocket", path, "--unixsocketperm", "700"]).start()
    try:
        result = run_bin("cq-len", "-b", f"redis+socket://{path}?virtual_host=2", "--format", "ndjson", "celery")
        assert result.status == 1 and "unknown queue 'celery'" in result.stderr, result  # reached, and empty
        assert run_bin("cq-ls", "-b", f"redis+socket://{path}").status == 0
    finally:
        server.stop()


# The pmessage parser --------------------------------------------------------------


def pmessage(pattern, channel, data):
    parts = [b"pmessage", pattern, channel, data]
    return b"*4\r\n" + b"".join(b"$%d\r\n%s\r\n" % (len(part), part) for part in parts)


def test_pmessage_frames_split_at_every_byte_boundary():
    """Recorded frames (an event, a task.multi batch, a malformed envelope) cut in two at every offset
    give exactly the records they give whole."""
    args = argparse.Namespace(timeout=1.0, buffer=1, queue=None, ttl=None, expires=None, wakeup=False,
                              enable_events=False)
    source = RedisEventSource(Broker("redis://127.0.0.1:1/0", "test"), args)
    pattern = source.pattern.encode()
    channel = b"/0.celeryev/task.succeeded"
    event = {"type": "task-succeeded", "uuid": "u1", "hostname": "w@h", "timestamp": 1.5}
    batch = [{"type": "task-started", "uuid": "u2"}, {"type": "task-succeeded", "uuid": "u2"}]
    stream = b"".join([
        pmessage(pattern, channel, kombu_event_envelope(event).encode()),
        pmessage(pattern, channel, kombu_event_envelope(batch).encode()),
        pmessage(pattern, channel, kombu_event_envelope(event, body="not base64!").encode()),
    ])

    def records(*chunks):
        for chunk in chunks:
            source._decode_item((7.0, chunk, 0))
        taken = list(source._pending)
        source._pending.clear()
        assert source._rest[0] == b""
        return taken

    whole = records(stream)
    assert [record["type"] for record in whole] == ["task-succeeded", "task-started", "task-succeeded", "error"]
    for cut in range(1, len(stream)):
        assert records(stream[:cut], stream[cut:]) == whole, cut

    # A Sentinel handover reads the demoted master and the new one at once: their chunks interleave.
    for cut in range(1, len(stream)):
        for item in [(7.0, stream[:cut], 0), (7.0, stream[:cut], 1), (7.0, stream[cut:], 0), (7.0, stream[cut:], 1)]:
            source._decode_item(item)
        both = list(source._pending)
        source._pending.clear()
        assert sorted(map(repr, both)) == sorted(map(repr, whole + whole)), cut
        assert source._rest == {0: b"", 1: b""}


# amqpwire: Connection.Blocked ------------------------------------------------------


def method_frame(class_id, method_id, arguments=b""):
    payload = struct.pack(">HH", class_id, method_id) + arguments
    return struct.pack(">BHI", 1, 0, len(payload)) + payload + b"\xce"


def test_connection_blocked_is_reported_as_blocked_not_as_silence():
    """RabbitMQ under a memory alarm sends Connection.Blocked (10, 60) with its reason: recorded frame."""
    ours, broker_side = socket.socketpair()
    try:
        connection = amqpwire.Connection(ours, timeout=1.0)
        broker_side.sendall(method_frame(10, 60, amqpwire.shortstr("low on memory")))
        with pytest.raises(amqpwire.Blocked, match="low on memory"):
            connection.drain(1.0)
    finally:
        ours.close()
        broker_side.close()


def test_the_client_says_it_understands_connection_blocked():
    """Without the capability in Start-Ok, RabbitMQ never tells: it just stops reading."""
    ours, broker_side = socket.socketpair()
    try:
        ours.settimeout(1.0)
        connection = amqpwire.Connection(ours, timeout=1.0)
        start = struct.pack(">BB", 0, 9) + amqpwire.table({}) + amqpwire.longstr("PLAIN") + amqpwire.longstr("en_US")
        broker_side.sendall(method_frame(10, 10, start))
        broker_side.settimeout(2.0)
        with pytest.raises((socket.timeout, OSError)):
            connection._handshake("guest", "guest", "/")  # waits for Tune, which never comes
        sent = broker_side.recv(65536)
        assert b"connection.blocked" in sent
    finally:
        ours.close()
        broker_side.close()


def test_module_docs_point_at_reconnect():
    """Someone looking for "reconnect to the new master" finds it from `ls celops/core`."""
    import celops.core

    core = os.path.dirname(celops.core.__file__)
    assert os.path.exists(os.path.join(core, "reconnect.py"))
    with open(os.path.join(core, "reconnect.py")) as source:
        assert "Reconnect to the new master" in source.read()
