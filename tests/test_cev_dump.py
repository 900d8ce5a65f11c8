"""cev-dump against real workers on Redis and RabbitMQ, and faults on a private redis-server."""

import base64
import os
import socket
import subprocess
import threading
import time

import pytest

from celops.commands.cev_dump import main
from tests.conftest import BIN, run_command
from tests.support import (RecordStream, RedisServer, Worker, free_port, kombu_event_envelope,
                           pattern_subscribers, undocumented_fields, wait_for, worker_env)

PREFIX = "cevdump-test:"  # the Redis worker uses a global_keyprefix: the channel must follow it


class Dump(RecordStream):
    """bin/cev-dump in a subprocess, its stdout records collected as they come."""

    def __init__(self, *args, env=None):
        super().__init__(subprocess.Popen([os.path.join(BIN, "cev-dump"), "-u", *args], stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, env=dict(os.environ, **(env or {}))))


def heartbeat_of(hostname):
    return lambda r: r.get("type") == "worker-heartbeat" and r.get("hostname") == hostname


def send(broker_url, transport_options=None):
    """Send add, fail and flaky through one client app, back to back; returns their task ids.

    One app, not ``send_tasks`` thrice: the three task-sent events then come
    first, so a ``--limit 3`` in the named-queue test ends on a message boundary.
    """
    from celery import Celery

    app = Celery("celops-test-client", broker=broker_url, set_as_current=False)
    app.conf.broker_transport_options = transport_options or {}
    app.conf.task_send_sent_event = True
    try:
        return {"add": app.send_task("tests.app.add", (1, 2)).id,
                "fail": app.send_task("tests.app.fail", ("kaput",)).id,
                "flaky": app.send_task("tests.app.flaky", (1,)).id}
    finally:
        app.close()


# One worker per transport for the whole module -----------------------------------------

@pytest.fixture(scope="module")
def redis_worker(redis_server, tmp_path_factory):
    url = redis_server.url(0)
    worker = Worker(url, logdir=str(tmp_path_factory.mktemp("w")), transport_options={"global_keyprefix": PREFIX})
    yield worker.start()
    worker.stop()


@pytest.fixture(scope="module")
def amqp_worker(rabbit_vhost, tmp_path_factory):
    worker = Worker(rabbit_vhost.url(), logdir=str(tmp_path_factory.mktemp("w")))
    yield worker.start()
    worker.stop()


@pytest.fixture(params=["redis", "amqp"])
def live(request):
    """(broker URL, extra cev-dump args, transport options, worker) with a running worker."""
    if request.param == "redis":
        worker = request.getfixturevalue("redis_worker")
        return worker.broker_url, ["-A", "tests.app"], {"global_keyprefix": PREFIX}, worker
    worker = request.getfixturevalue("amqp_worker")
    return worker.broker_url, [], {}, worker


def test_lifecycle_events_of_real_workers(live):
    url, args, options, worker = live
    dump = Dump("-b", url, *args, "--wakeup", env=worker_env(url, options))
    dump.until(heartbeat_of(worker.hostname))
    ids = send(url, options)
    dump.until(lambda r: r.get("type") == "task-succeeded" and r.get("uuid") == ids["flaky"])
    dump.until(lambda r: r.get("type") == "task-failed" and r.get("uuid") == ids["fail"])
    dump.until(lambda r: r.get("type") == "task-succeeded" and r.get("uuid") == ids["add"])
    assert dump.interrupt() == 130
    assert not [r for r in dump.records if r["type"] in ("error", "celops-gap")]
    by_task = {name: [r for r in dump.records if r.get("uuid") == task_id] for name, task_id in ids.items()}
    def worker_events(name):  # the client's task-sent may arrive after the worker's first event
        assert "task-sent" in [r["type"] for r in by_task[name]]
        return [r["type"] for r in by_task[name] if r["hostname"] == worker.hostname]

    assert worker_events("add") == ["task-received", "task-started", "task-succeeded"]
    assert worker_events("fail") == ["task-received", "task-started", "task-failed"]
    assert sorted(worker_events("flaky")) == sorted([  # pool processes race each other
        "task-received", "task-started", "task-retried", "task-received", "task-started", "task-succeeded"])
    succeeded = next(r for r in by_task["add"] if r["type"] == "task-succeeded")
    assert succeeded["result"] == "3" and succeeded["runtime"] >= 0
    assert succeeded["name"] == "tests.app.add"  # filled in from task-received
    failed = next(r for r in by_task["fail"] if r["type"] == "task-failed")
    assert "kaput" in failed["exception"] and "Traceback" in failed["traceback"]
    for record in dump.records:
        assert isinstance(record["local_received"], float) and isinstance(record["timestamp"], float)
        assert isinstance(record["clock"], int) and record["hostname"]
    heartbeat = next(r for r in dump.records if heartbeat_of(worker.hostname)(r))
    assert {"freq", "sw_ident", "sw_ver"} <= heartbeat.keys()


def test_filters(redis_worker, redis_server):
    url = redis_worker.broker_url
    common = ["-b", url, "-A", "tests.app"]
    env = worker_env(url, {"global_keyprefix": PREFIX})
    subscribed = pattern_subscribers(url)
    failed_or_flaky = Dump(*common, "--type", "task-failed,task-succeeded", "--task", "tests.app.f*",
                           "--limit", "2", env=env)
    no_heartbeats = Dump(*common, "--hostname", redis_worker.hostname, "--no-heartbeats", env=env)
    started = Dump(*common, "--type", "task-start*", "--type", "worker-heartbeat", env=env)
    wait_for(lambda: pattern_subscribers(url) >= subscribed + 3, 20, "three subscriptions")
    ids = send(url, {"global_keyprefix": PREFIX})
    assert failed_or_flaky.finish() == 0
    assert sorted((r["type"], r["uuid"]) for r in failed_or_flaky.records) == sorted(
        [("task-failed", ids["fail"]), ("task-succeeded", ids["flaky"])])
    no_heartbeats.until(lambda r: r.get("type") == "task-succeeded" and r.get("uuid") == ids["flaky"])
    started.until(lambda r: r.get("type") == "task-started" and r.get("uuid") == ids["flaky"])
    started.until(heartbeat_of(redis_worker.hostname))
    assert no_heartbeats.interrupt() == started.interrupt() == 130
    assert {r["hostname"] for r in no_heartbeats.records} == {redis_worker.hostname}
    assert "worker-heartbeat" not in {r["type"] for r in no_heartbeats.records}
    assert {r["type"] for r in started.records} == {"task-started", "worker-heartbeat"}


@pytest.mark.parametrize("option, seconds", [("--duration", "1"), ("--idle", "1")])
def test_duration_and_idle_timeout_end_the_run(fresh_redis_url, option, seconds):
    start = time.monotonic()
    result = run_command(main, ["-b", fresh_redis_url, option, seconds])
    assert result.status == 0 and result.stdout == b"" and result.stderr == ""
    assert 0.9 < time.monotonic() - start < 10


def test_idle_timeout_counts_written_records_only(fresh_redis_url):
    """Filtered-out events keep arriving; --idle still ends the run."""
    import redis

    client = redis.Redis.from_url(fresh_redis_url)
    db = fresh_redis_url.rsplit("/", 1)[1]
    stop = threading.Event()

    def heartbeats():
        while not stop.wait(0.1):
            client.publish(f"/{db}.celeryev/worker.heartbeat",
                           kombu_event_envelope({"type": "worker-heartbeat", "hostname": "h", "timestamp": time.time()}))

    threading.Thread(target=heartbeats, daemon=True).start()
    try:
        start = time.monotonic()
        result = run_command(main, ["-b", fresh_redis_url, "--no-heartbeats", "--idle", "1"])
    finally:
        stop.set()
    assert result.status == 0 and result.stdout == b""
    assert time.monotonic() - start < 10


# Faults on a private redis-server of this module ----------------------------------------

@pytest.fixture(scope="module")
def own_redis(tmp_path_factory):
    server = RedisServer(str(tmp_path_factory.mktemp("redis-faults"))).start()
    yield server
    server.stop()


def publish(server, body, routing_key="task.succeeded"):
    import redis

    client = redis.Redis.from_url(server.url(0))
    try:
        return client.publish(f"/0.celeryev/{routing_key}", body)
    finally:
        client.close()


def wait_subscribed(server, count=1):
    wait_for(lambda: pattern_subscribers(server.url(0)) >= count, 10, "cev-dump's subscription")


def event(n):
    return {"type": "task-succeeded", "uuid": f"task-{n}", "hostname": "h@x", "timestamp": time.time(),
            "clock": n, "result": "4", "runtime": 0.5}


def test_broker_restart_gives_a_gap_record_and_the_stream_goes_on(own_redis):
    recording = Dump("-b", own_redis.url(0))
    exiting = Dump("-b", own_redis.url(0), "--on-gap", "exit")
    wait_subscribed(own_redis, 2)
    publish(own_redis, kombu_event_envelope(event(1)))
    recording.until(lambda r: r.get("uuid") == "task-1")
    own_redis.process.kill()
    own_redis.process.wait()
    own_redis.start()  # the same port
    gap = recording.until(lambda r: r["type"] == "celops-gap")
    assert gap["since"] <= gap["until"] and gap["dropped"] is None and gap["reason"]
    assert undocumented_fields(gap) == []
    wait_subscribed(own_redis, 1)
    publish(own_redis, kombu_event_envelope(event(2)))
    recording.until(lambda r: r.get("uuid") == "task-2")
    assert recording.interrupt() == 130
    assert exiting.finish() == 1
    assert "events lost" in exiting.stderr()


def test_output_buffer_limit_disconnect_is_a_gap_never_silence(own_redis):
    import redis

    dump = Dump("-b", own_redis.url(0))
    wait_subscribed(own_redis)
    client = redis.Redis.from_url(own_redis.url(0))
    limits = client.config_get("client-output-buffer-limit")["client-output-buffer-limit"]
    client.config_set("client-output-buffer-limit", "pubsub 64 64 0")
    try:
        # past the 16 KB reply buffer, the limit counts: Redis drops the subscriber
        publish(own_redis, kombu_event_envelope(dict(event(3), result="x" * 100_000)))
        gap = dump.until(lambda r: r["type"] == "celops-gap")
    finally:
        client.config_set("client-output-buffer-limit", limits)
    assert "closed" in gap["reason"] or "reset" in gap["reason"]
    wait_subscribed(own_redis)
    publish(own_redis, kombu_event_envelope(event(4)))
    dump.until(lambda r: r.get("uuid") == "task-4")
    assert dump.interrupt() == 130


def test_malformed_messages_become_error_records(own_redis):
    dump = Dump("-b", own_redis.url(0))
    wait_subscribed(own_redis)
    bad = [b"not json at all", kombu_event_envelope({}, body="%%%not-base64%%%"),
           kombu_event_envelope({}, body=base64.b64encode(b"[1, 2").decode()),
           kombu_event_envelope({}, body=base64.b64encode(b"42").decode()),
           kombu_event_envelope({"uuid": "no-type"}), kombu_event_envelope({"type": 5, "uuid": "number-type"})]
    for body in bad:
        publish(own_redis, body)
    untyped_in_batch = [event(5), {"uuid": "no-type-in-batch"}, event(6)]
    multi = kombu_event_envelope(untyped_in_batch, routing_key="task.multi")
    publish(own_redis, multi, routing_key="task.multi")
    dump.until(lambda r: r.get("uuid") == "task-6")
    assert dump.interrupt() == 130
    errors = [r for r in dump.records if r["type"] == "error"]
    assert [r["size"] for r in errors] == [len(body) for body in bad + [multi]]
    assert "not JSON" in errors[0]["error"] and "base64" in errors[1]["error"]
    assert "not JSON" in errors[2]["error"] and "not an event object" in errors[3]["error"]
    assert all('without a string "type"' in r["error"] for r in errors[4:])
    assert [r["channel"] for r in errors] == ["/0.celeryev/task.succeeded"] * len(bad) + ["/0.celeryev/task.multi"]
    assert [r.get("uuid") for r in dump.records if r["type"] != "error"] == ["task-5", "task-6"]


def test_unreachable_broker_exits_69_with_one_line():
    port = free_port()
    for url in (f"redis://:hunter2@127.0.0.1:{port}/0", f"amqp://guest:hunter2@127.0.0.1:{port}//"):
        result = run_command(main, ["-b", url, "-t", "1"])
        assert result.status == 69, result
        assert result.stdout == b""
        assert result.stderr.count("\n") == 1 and "hunter2" not in result.stderr
        assert result.stderr.startswith("cev-dump: error: cannot reach broker")


def test_rabbitmq_options_on_redis_are_a_usage_error(fresh_redis_url):
    result = run_command(main, ["-b", fresh_redis_url, "--queue", "audit"])
    assert result.status == 2 and "RabbitMQ only" in result.stderr


# RabbitMQ's named queue ------------------------------------------------------------------

def test_named_queue_keeps_events_between_runs(amqp_worker, unique):
    url = amqp_worker.broker_url
    first = run_command(main, ["-b", url, "--queue", unique, "--no-heartbeats", "--idle", "0.5"])
    assert first.status == 0
    ids = send(url)  # nobody is reading now: the durable queue keeps them
    wait_for(lambda: _queue_depth(url, unique) >= 15, 30, "the tasks' events in the named queue")
    later = run_command(main, ["-b", url, "--queue", unique, "--no-heartbeats", "--limit", "3"])
    rest = run_command(main, ["-b", url, "--queue", unique, "--no-heartbeats", "--idle", "3"])
    records = later.records + rest.records
    assert later.status == rest.status == 0 and len(later.records) == 3
    for task_id in ids.values():  # the first events are kept (task-sent and task-received may come in either order)
        assert {"task-sent", "task-received"} <= {r["type"] for r in records if r["uuid"] == task_id}
    assert len({(r["uuid"], r["type"], r["clock"]) for r in records}) == len(records)  # acked once each
    _delete_queue(url, unique)


def _queue_depth(url, name):
    from kombu import Connection

    with Connection(url) as connection:
        return connection.default_channel.queue_declare(name, passive=True).message_count


def _delete_queue(url, name):
    from kombu import Connection

    with Connection(url) as connection:
        connection.default_channel.queue_delete(name)


def test_enable_events_turns_on_a_worker_started_without_them(fresh_redis_url, start_worker):
    worker = start_worker(fresh_redis_url, events=False, concurrency=1)
    result = run_command(main, ["-b", fresh_redis_url, "--enable-events", "--hostname", worker.hostname,
                                "--limit", "1", "--duration", "30"])
    assert result.status == 0
    assert [r["hostname"] for r in result.records] == [worker.hostname]


def test_rabbitmq_connection_closed_by_the_broker_gives_a_gap(amqp_worker, rabbit_vhost):
    import urllib.parse

    import requests

    from tests.support import RABBIT_API, RABBIT_AUTH

    def our_connection():
        consumers = requests.get(f"{RABBIT_API}/consumers/{rabbit_vhost.name}", auth=RABBIT_AUTH, timeout=10).json()
        return next((c["channel_details"]["connection_name"] for c in consumers  # details are [] while new
                     if c["queue"]["name"].startswith("celeryev.") and c["channel_details"]), None)

    dump = Dump("-b", amqp_worker.broker_url)
    dump.until(heartbeat_of(amqp_worker.hostname))
    wait_for(our_connection, 10, "cev-dump's consumer")
    requests.delete(f"{RABBIT_API}/connections/{urllib.parse.quote(our_connection(), safe='')}",
                    auth=RABBIT_AUTH, timeout=10).raise_for_status()
    gap = dump.until(lambda r: r["type"] == "celops-gap")
    assert "CONNECTION_FORCED" in gap["reason"]
    dump.until(lambda r: heartbeat_of(amqp_worker.hostname)(r) and r["local_received"] > gap["until"])
    assert dump.interrupt() == 130


def test_task_names_are_bounded_and_keep_the_recent_ones():
    from celops.commands.cev_dump import TaskNames

    names = TaskNames(size=4)
    for number in range(10):
        names.fill({"type": "task-received", "uuid": f"t{number}", "name": f"task{number}"})
        assert len(names) <= 4
    later = [{"type": "task-succeeded", "uuid": f"t{number}"} for number in range(10)]
    for event in later:
        names.fill(event)
    assert [event.get("name") for event in later[-2:]] == ["task8", "task9"]  # at least size / 2 kept
    assert "name" not in later[0]


def test_a_type_no_celery_event_has_is_warned_about(fresh_redis_url):
    result = run_command(main, ["-b", fresh_redis_url, "--type", "task-faild,task-*,worker-heartbeat",
                                "--type", "myapp-*", "--idle", "0.2"])
    assert result.status == 0 and result.stdout == b""
    assert result.stderr.splitlines() == [
        "cev-dump: --type task-faild matches none of celery's event types; did you mean task-failed?",
        "cev-dump: --type myapp-* matches none of celery's event types; only custom events can match it"]


def test_timeout_is_the_connect_deadline_against_a_broker_that_never_answers():
    """-t is how long to wait for the broker, uncapped; --idle does not shorten it."""
    with socket.socket() as silent:  # the kernel completes the handshake; nobody ever answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        commands = {
            "cev-cam": ["cev-cam", "--live", "-b", f"redis://127.0.0.1:{port}/0", "-t", "5.5"],
            "cev-dump redis": ["cev-dump", "-b", f"redis://127.0.0.1:{port}/0", "-t", "2", "--idle", "0.3"],
            "cev-dump amqp": ["cev-dump", "-b", f"amqp://guest:guest@127.0.0.1:{port}//", "-t", "2", "--idle", "0.3"],
        }
        started = time.monotonic()
        processes = {name: subprocess.Popen([os.path.join(BIN, argv[0]), *argv[1:]], stdin=subprocess.DEVNULL,
                                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                     for name, argv in commands.items()}
        for name, process in processes.items():
            out, err = process.communicate(timeout=30)
            waited = time.monotonic() - started
            deadline = float(commands[name][commands[name].index("-t") + 1])
            assert process.returncode == 69 and out == b"", (name, err)
            assert b"cannot reach broker" in err, (name, err)
            assert waited >= deadline, (name, waited)  # a lower bound only: a timeout never fires early
