"""The queue tools where a cluster is not what they expect: wrong-type keys, unknown queues, another
separator, a Redis restart mid-watch, a restricted ACL user (issue 11)."""

import os
import signal
import subprocess

import pytest
import redis

from celops.commands import cctl, cq_len, cq_ls, cq_purge
from celops.core.redis_layout import infer_sep
from tests.conftest import BIN, run_command
from tests.queue_support import publish
from tests.support import RabbitVhost, RecordStream, RedisServer, poll

DEFAULT_SEP = b"\x06\x16"


def test_a_wrong_type_key_is_an_error_record_and_the_other_queues_are_measured(fresh_redis_url, unique):
    """A string under a bound queue's name used to make a bare cq-len print nothing and exit 1."""
    url = fresh_redis_url
    publish(url, [(unique, 0, (1, 1)), (unique, 9, (1, 1))])
    client = redis.Redis.from_url(url)
    client.set("strq", "x")
    client.sadd("_kombu.binding.strq", b"strq" + DEFAULT_SEP + DEFAULT_SEP + b"strq")
    for argv in ([], ["strq", unique]):
        result = run_command(cq_len.main, ["-b", url, *argv])
        assert result.status == 65, result
        records = {record["queue"]: record for record in result.records}
        assert records["strq"] == {"type": "error", "queue": "strq", "key": "strq",
                                   "error": "holds a string, not a list"}
        assert records[unique]["messages"] == 2
        assert result.stderr == "cq-len: error: queue 'strq': key 'strq' holds a string, not a list\n"
    prom = run_command(cq_len.main, ["-b", url, "--format", "prom", "strq", unique])
    assert prom.status == 65 and b'celery_queue_length{queue="%s"} 2.0' % unique.encode() in prom.stdout
    assert b"strq" not in prom.stdout and "'strq' holds a string" in prom.stderr


@pytest.mark.parametrize("command", ["cq-len", "cq-purge"])
def test_an_unknown_queue_is_named_and_fails_on_both_brokers(broker_url, unique, command):
    """cq-len --max 3 typoqueue and cq-purge -f -Q typoqueue used to say 0 and exit 0."""
    publish(broker_url, [(unique, 0, (1, 1))])
    typo = f"{unique}-typo"
    argv = {"cq-len": ["--max", "3", unique, typo], "cq-purge": ["-f", "-Q", f"{unique},{typo}"]}[command]
    main = {"cq-len": cq_len.main, "cq-purge": cq_purge.main}[command]
    result = poll(lambda: run_command(main, ["-b", broker_url, *argv]), lambda r: r.records, 10, "a record")
    assert result.status == 1, result
    assert [record["queue"] for record in result.records] == [unique]
    why = "no binding and no list" if broker_url.startswith("redis") else "no such queue"
    assert f"{command}: unknown queue '{typo}' ({why} on " in result.stderr, result
    assert "guest:guest" not in result.stderr


@pytest.fixture
def empty_broker_url(request, fresh_redis_url):
    """A broker nothing else wrote to: a fresh Redis db, or a vhost of this test's own."""
    if request.param == "redis":
        yield fresh_redis_url
        return
    vhost = RabbitVhost().create()
    yield vhost.url()
    vhost.delete()


@pytest.mark.parametrize("empty_broker_url", ["redis", "amqp"], indirect=True)
def test_cq_ls_lists_only_what_exists(empty_broker_url, unique):
    """cq-ls used to list `celery` on a broker that has no such queue."""
    broker_url = empty_broker_url
    publish(broker_url, [(unique, 0, (1, 1))])
    names = poll(lambda: [r["queue"] for r in run_command(cq_ls.main, ["-b", broker_url]).records],
                 lambda names: unique in names, 20, "the queue listed")
    assert "celery" not in names


def test_the_separator_is_inferred_from_the_binding_members():
    colon = [b"q1::q1", b"q3::q3", b"::w1@h.celery.pidbox", b"abc::abc.reply.celery.pidbox"]
    assert infer_sep(colon, "\x06\x16") == ":"
    assert infer_sep([m.replace(b"::", DEFAULT_SEP + DEFAULT_SEP) for m in colon], "\x06\x16") == "\x06\x16"
    assert infer_sep([b"rk|#|q", b"celery|celery|celery"], "\x06\x16") == "|"
    assert infer_sep([], "\x06\x16") == "\x06\x16"


COLON = {"sep": ":", "priority_steps": list(range(10))}


def test_a_cluster_with_another_separator_is_read_right_without_app(fresh_redis_url, unique, start_worker):
    """sep ':' with steps 0..9: cq-len said 1 of 10, cq-ls listed q3::q3, cq-purge left 18 behind,
    and cctl ping got no reply while every worker logged 'not enough values to unpack'."""
    url = fresh_redis_url
    parked = f"{unique}-parked"
    publish(url, [(unique, p, (p, 1)) for p in range(10)] + [(parked, p, (p, 1)) for p in range(1, 10)] * 2,
            transport_options=COLON)
    worker = start_worker(url, queues=[f"{unique}-busy"], transport_options=COLON, events=False)

    measured = run_command(cq_len.main, ["-b", url, unique])
    assert measured.status == 0 and measured.records[0]["messages"] == 10, measured
    assert measured.records[0]["by_priority"] == {str(step): 1 for step in range(10)}
    assert "cq-len: no -A app: using separator ':' and priority steps 0,1,2,3,4,5,6,7,8,9" in measured.stderr

    listing = run_command(cq_ls.main, ["-b", url])
    assert "cq-ls: no -A app: using separator ':'" in listing.stderr, listing
    listed = [r["queue"] for r in listing.records]
    assert {unique, parked, f"{unique}-busy"} <= set(listed) and not [q for q in listed if ":" in q], listed

    purged = run_command(cq_purge.main, ["-b", url, "-Q", parked, "-f"])
    assert purged.records == [{"type": "queue", "queue": parked, "purged": 18}], purged
    assert not [key for key in redis.Redis.from_url(url).keys() if key.startswith(parked.encode() + b":")]

    pinged = run_command(cctl.main, ["-b", url, "ping", "-t", "5", "-d", worker.hostname])
    assert pinged.status == 0 and [r["hostname"] for r in pinged.records] == [worker.hostname], pinged
    members = redis.Redis.from_url(url).smembers("_kombu.binding.reply.celery.pidbox")
    assert all(len(member.split(b":")) == 3 for member in members), members
    with open(worker.logfile) as log:
        assert "not enough values to unpack" not in log.read()


def test_watch_rides_out_a_redis_restart(tmp_path, unique):
    """cq-len --watch 1 used to die with exit 69 the first time Redis restarted."""
    server = RedisServer(str(tmp_path / "redis")).start()
    url = server.url()
    publish(url, [(unique, 0, (1, 1))])
    proc = subprocess.Popen([os.path.join(BIN, "cq-len"), "-b", url, "--watch", "0.2", unique],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stream = RecordStream(proc)
    try:
        first = stream.until(lambda record: record["queue"] == unique)
        server.process.kill()
        server.process.wait(10)
        server = RedisServer(server.directory, port=server.port).start()  # empty: the queue is gone
        publish(url, [(unique, 0, (1, 1)), (unique, 0, (2, 2))])
        after = stream.until(lambda record: record["messages"] == 2, timeout=30)
        assert after["timestamp"] > first["timestamp"]
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGINT)
        status = stream.finish()
        server.stop()
    stderr = proc.stderr.read().decode()
    assert status == 130, stderr
    assert f"cq-len: cannot reach broker {url}: " in stderr and "; retrying" in stderr, stderr
    assert "cq-len: broker back after " in stderr, stderr


def test_watch_says_an_unknown_queue_once_not_every_tick(fresh_redis_url, unique):
    """A long --watch run must not repeat (or pile up) the same problem at every batch."""
    publish(fresh_redis_url, [(unique, 0, (1, 1))])
    proc = subprocess.Popen([os.path.join(BIN, "cq-len"), "-b", fresh_redis_url, "--watch", "0.1", unique,
                             f"{unique}-typo"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stream = RecordStream(proc)
    try:
        first = stream.until(lambda record: record["queue"] == unique)
        stream.until(lambda record: record["timestamp"] > first["timestamp"] + 0.25)  # a few ticks later
    finally:
        proc.send_signal(signal.SIGINT)
        stream.finish()
    stderr = proc.stderr.read().decode()
    assert stderr.count(f"unknown queue '{unique}-typo'") == 1, stderr


def test_a_restricted_acl_user_gets_exit_77_naming_the_command(redis_server, unique):
    """A Redis user without SCAN used to get 'ReplyError: NOPERM ...'."""
    admin = redis.Redis.from_url(redis_server.url())
    user = f"mon{unique}"
    admin.acl_setuser(user, enabled=True, passwords=[f"+pw{unique}"], keys=["*"], commands=["+@all", "-scan"])
    try:
        url = f"redis://{user}:pw{unique}@127.0.0.1:{redis_server.port}/0"
        for main, argv in [(cq_ls.main, []), (cq_len.main, []), (cq_purge.main, ["-f"])]:
            result = run_command(main, ["-b", url, *argv])
            assert result.status == 77, result
            assert f"the Redis user '{user}' may not run the SCAN command (ACL)" in result.stderr, result
            assert f"pw{unique}" not in result.stderr
        admin.acl_setuser(user, reset=True, enabled=True, passwords=[f"+pw{unique}"], keys=["*"],
                          commands=["+@all", "-llen"])
        result = run_command(cq_len.main, ["-b", url, "celery"])
        assert result.status == 77 and "may not run the LLEN command" in result.stderr, result
    finally:
        admin.acl_deluser(user)


def test_cq_purge_unlinks_never_deletes(fresh_redis_url, unique):
    """DEL of a 1M-message list held Redis 46 ms; UNLINK (one per priority list) frees it in the background."""
    url = fresh_redis_url
    publish(url, [(unique, p, (p, 1)) for p in (0, 9)])
    client = redis.Redis.from_url(url)

    def calls(command):
        return client.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0)

    before = {command: calls(command) for command in ("del", "unlink")}
    result = run_command(cq_purge.main, ["-b", url, "-Q", unique, "-f"])
    assert result.records == [{"type": "queue", "queue": unique, "purged": 2}], result
    assert calls("unlink") == before["unlink"] + 4 and calls("del") == before["del"]
