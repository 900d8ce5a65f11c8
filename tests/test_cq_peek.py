"""cq-peek: decoded records in delivery order, both protocols, never unpickling, both brokers."""

import redis

from celops.commands import cq_peek
from tests.conftest import run_command
from tests.queue_support import publish
from tests.support import poll

ODD_NAME = "peek me ✓ ü"


def test_redis_delivery_order_offset_and_limit(fresh_redis_url):
    sends = [(ODD_NAME, priority, (priority, n)) for n in range(3) for priority in (9, 4, 0)]
    ids = publish(fresh_redis_url, sends)
    # kombu delivers priority list 0 (priorities 0-2) first, then 3, 6, 9; oldest first within each
    expected = sorted(zip(ids, [s[2] for s in sends], [s[1] for s in sends]), key=lambda sent: sent[2] // 3)
    result = run_command(cq_peek.main, ["-b", fresh_redis_url, ODD_NAME])
    assert result.status == 0 and result.stderr == "", result
    records = result.records
    assert [(r["uuid"], tuple(r["args"]), r["priority"]) for r in records] == expected
    first = records[0]
    assert first["id"] == first["uuid"] and first["task"] == "tests.app.add" and first["kwargs"] == {}
    assert first["queue"] == ODD_NAME and first["retries"] == 0 and first["eta"] is None
    assert first["root_id"] == first["uuid"] and first["headers"]["argsrepr"] and first["size"] > 0

    window = run_command(cq_peek.main, ["-b", fresh_redis_url, ODD_NAME, "--offset", "2", "-n", "3"]).records
    assert [r["uuid"] for r in window] == [e[0] for e in expected[2:5]]  # crosses a priority list boundary
    assert run_command(cq_peek.main, ["-b", fresh_redis_url, ODD_NAME, "--offset", "9"]).records == []
    assert run_command(cq_peek.main, ["-b", fresh_redis_url, "no-such-queue"]).records == []


def test_redis_protocol_v1_pickle_and_garbage(fresh_redis_url, unique):
    (v1,) = publish(fresh_redis_url, [(unique, 0, (1, 2))], protocol=1)
    (pickled,) = publish(fresh_redis_url, [(unique, 0, (3, 4))], serializer="pickle")
    redis.Redis.from_url(fresh_redis_url).lpush(unique, b"\x80not a kombu message")
    (last,) = publish(fresh_redis_url, [(unique, 0, (5, 6))])
    result = run_command(cq_peek.main, ["-b", fresh_redis_url, unique])
    assert result.status == 0, result
    old, pickle, garbage, new = result.records
    assert (old["uuid"], old["id"], old["task"], old["args"], old["kwargs"]) == (v1, v1, "tests.app.add", [1, 2], {})
    assert pickle["uuid"] == pickled and pickle["args"] is None
    assert pickle["body"] == f"<pickle, {pickle['size']} bytes>"
    assert garbage["type"] == "error" and garbage["size"] == 20 and garbage["queue"] == unique
    assert new["uuid"] == last and new["args"] == [5, 6]


def test_rabbitmq_peek_requeues(rabbit_vhost, unique):
    url = rabbit_vhost.url()
    ids = publish(url, [(unique, 0, (n, n)) for n in range(5)])
    result = run_command(cq_peek.main, ["-b", url, unique, "-n", "3"])
    assert result.status == 0, result
    assert [(r["uuid"], r["args"]) for r in result.records] == [(i, [n, n]) for n, i in enumerate(ids[:3])]
    # the peeked messages went back: all five are still there
    again = poll(lambda: run_command(cq_peek.main, ["-b", url, unique, "-n", "10"]).records,
                 lambda records: len(records) == 5, 20, "the peeked messages back in the queue")
    assert sorted(r["uuid"] for r in again) == sorted(ids)
    assert run_command(cq_peek.main, ["-b", url, unique, "-n", "0"]).status == 2
