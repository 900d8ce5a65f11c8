"""cq-peek: decoded records in delivery order, both protocols, never unpickling, both brokers."""

import base64
import zlib

import orjson
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from celops.commands import cq_peek
from celops.core import decode, ndjson
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


def test_rabbitmq_limit_0_means_all_and_empty_values_are_null(rabbit_vhost, unique):
    """-n 0 is every ready message, as the help says; the API's "undefined" (an AMQP void) is null."""
    url = rabbit_vhost.url()
    ids = publish(url, [(unique, 0, (n, n)) for n in range(4)])
    result = poll(lambda: run_command(cq_peek.main, ["-b", url, unique, "-n", "0"]),
                  lambda result: len(result.records) == 4, 20, "every message peeked")
    assert result.status == 0 and sorted(r["uuid"] for r in result.records) == sorted(ids), result
    assert b"undefined" not in result.stdout, result
    first = result.records[0]
    assert first["eta"] is None and first["expires"] is None and first["parent_id"] is None
    assert first["headers"]["timelimit"] == [None, None]


def test_a_management_url_that_is_not_one_is_a_usage_error(rabbit_vhost, unique):
    result = run_command(cq_peek.main, ["-b", rabbit_vhost.url(), unique, "--management-url", "none"])
    assert result.status == 2 and "--management-url" in result.stderr and "Error" not in result.stderr, result


def envelope(body, headers=None, encoding="base64", **properties):
    """A kombu Redis envelope around ``body`` (bytes), as kombu LPUSHes it."""
    text = base64.b64encode(body).decode() if encoding == "base64" else body
    return orjson.dumps({"body": text, "content-encoding": "utf-8", "content-type": "application/json",
                         "headers": {"id": "x", "task": "t"} if headers is None else headers,
                         "properties": {"body_encoding": encoding, "priority": 0, **properties}})


def test_messages_that_cannot_be_decoded_never_hide_the_rest(fresh_redis_url, unique):
    """Headers that are a list, a body that is not base64: records with error, and the rest still print."""
    before = publish(fresh_redis_url, [(unique, 0, (n, n)) for n in range(3)])
    client = redis.Redis.from_url(fresh_redis_url)
    client.lpush(unique, envelope(b"[[], {}, {}]", headers=["id", "t1"]))
    client.lpush(unique, envelope(b"", headers={"id": "bad64", "task": "t"}).replace(b'"body":""', b'"body":"!!!!"'))
    client.lpush(unique, envelope(b"[[], {}, {}]", headers={"id": ["not", "a", "string"], "task": "t"}))
    after = publish(fresh_redis_url, [(unique, 0, (n, n)) for n in range(3)])
    result = run_command(cq_peek.main, ["-b", fresh_redis_url, unique])
    assert result.status == 0, result
    records = result.records
    assert [r["uuid"] for r in records] == [*before, None, "bad64", None, *after]
    listed, bad64, odd_id = records[3:6]
    assert "headers are a list" in listed["error"] and listed["headers"] == ["id", "t1"]
    assert "not valid base64" in bad64["error"] and bad64["size"] == 4 and bad64["task"] == "t"
    assert "header 'id' is a list, not a string" in odd_id["error"] and odd_id["args"] == []
    assert all("error" not in r for r in records[:3] + records[6:])


def test_a_key_that_is_not_a_list_is_an_error_record_and_the_rest_print(fresh_redis_url, unique):
    ids = publish(fresh_redis_url, [(unique, 0, (1, 1)), (unique, 9, (2, 2))])
    client = redis.Redis.from_url(fresh_redis_url)
    client.delete(f"{unique}\x06\x163")
    client.set(f"{unique}\x06\x163", "x")
    result = run_command(cq_peek.main, ["-b", fresh_redis_url, unique])
    assert result.status == 65, result
    first, error, last = result.records
    assert (first["uuid"], last["uuid"]) == tuple(ids)
    assert error == {"type": "error", "queue": unique, "key": f"{unique}\x06\x163", "error": error["error"]}
    assert error["error"] == "holds a string, not a list" and "Traceback" not in result.stderr


def test_an_unknown_queue_is_named_on_both_brokers(broker_url, unique):
    """Issue 11: a typo in a queue name is not an empty queue (exit 1, named on stderr, no record)."""
    result = run_command(cq_peek.main, ["-b", broker_url, f"{unique}-typo"])
    assert result.status == 1 and result.stdout == b"", result
    assert f"unknown queue '{unique}-typo'" in result.stderr


def test_a_compressed_body_is_decoded_and_a_zip_bomb_is_named_not_inflated(fresh_redis_url, unique):
    """kombu's zlib compression is decoded; a body that would inflate to 200 MiB is stopped at 64 MiB."""
    (task_id,) = publish(fresh_redis_url, [(unique, 0, (2, 3))])
    client = redis.Redis.from_url(fresh_redis_url)
    envelope = orjson.loads(client.rpop(unique))
    zeros = zlib.compressobj()
    bomb = b"".join(zeros.compress(bytes(1 << 20)) for _ in range(200)) + zeros.flush()
    for body in (zlib.compress(base64.b64decode(envelope["body"])), bomb):
        client.lpush(unique, orjson.dumps(dict(envelope, body=base64.b64encode(body).decode(),
                                               headers=dict(envelope["headers"], compression="application/x-gzip"))))
    result = run_command(cq_peek.main, ["-b", fresh_redis_url, unique])
    good, bad = (orjson.loads(line) for line in result.stdout.splitlines())
    assert (good["uuid"], good["args"], "error" in good) == (task_id, [2, 3], False)
    assert bad["uuid"] == task_id and "inflates past 64 MiB" in bad["error"] and bad["args"] is None


# Fuzzing the decoder: no envelope, however odd, raises ---------------------------

json_values = st.recursive(st.none() | st.booleans() | st.integers(-2 ** 63, 2 ** 64 - 1) | st.floats(allow_nan=False)
                           | st.text(max_size=20), lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
header_values = st.fixed_dictionaries({}, optional={
    name: json_values for name in ("id", "task", "eta", "expires", "retries", "root_id", "parent_id", "origin",
                                   "compression")}) | json_values
bodies = st.one_of(
    json_values.map(lambda value: base64.b64encode(orjson.dumps(value)).decode()),
    st.binary(max_size=40).map(lambda data: base64.b64encode(zlib.compress(data)).decode()),
    st.text(max_size=40), json_values)
envelopes = st.fixed_dictionaries({}, optional={
    "body": bodies, "headers": header_values,
    "content-type": st.sampled_from(["application/json", "application/x-python-serialize", None, 3, []]),
    "properties": st.fixed_dictionaries({}, optional={
        "body_encoding": st.sampled_from(["base64", "utf-8", None, "rot13", [1]]), "priority": json_values})
    | json_values}) | json_values


def assert_a_record(record):
    assert record["type"] in ("message", "error") and isinstance(record.get("error", ""), str)
    ndjson.dumps(record)  # writable as a record
    if record["type"] == "message":
        assert all(record[name] is None or isinstance(record[name], str) for name in ("uuid", "task", "eta"))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(envelopes)
def test_fuzzed_redis_envelopes_always_give_a_record(value):
    assert_a_record(decode.redis_message("q", orjson.dumps(value)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.fixed_dictionaries({}, optional={
    "payload": bodies, "payload_encoding": st.sampled_from(["base64", "string", "undefined", 7]),
    "properties": st.fixed_dictionaries({}, optional={
        "headers": header_values, "priority": json_values,
        "content_type": st.sampled_from(["application/json", "undefined", None, 3])}) | json_values})
    | json_values)
def test_fuzzed_management_api_messages_always_give_a_record(message):
    assert_a_record(decode.rabbit_message("q", message))
