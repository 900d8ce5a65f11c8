"""cq-move and cq-purge's filters and trims: real Redis (priorities, a global_keyprefix app), a private
RabbitMQ vhost, real workers running the moved tasks with their original ids and args."""

import copy
import io
import os
import random
import signal
import subprocess
import uuid

import orjson
import pytest
import redis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from celops.commands import cq_move, cq_purge
from celops.core import publish_frames
from celops.core.cli import IO
from celops.core.redis_move import fresh_delivery_tags
from tests.conftest import BIN, empty_db_url, run_bin, run_command
from tests.queue_support import fill_copies, publish
from tests.results_support import wait_done
from tests.support import send_tasks, wait_for, worker_env

KEYPREFIX = {"global_keyprefix": "pfx:"}


def move(*argv, stdin=b""):
    return run_command(cq_move.main, argv, stdin=stdin)


def purge(*argv, stdin=b""):
    return run_command(cq_purge.main, argv, stdin=stdin)


def ids_in(records):
    return [record["uuid"] for record in records if record["type"] == "message"]


def without_dry_run(records):
    return [{key: value for key, value in record.items() if key != "dry_run"} for record in records]


class Terminal(io.BytesIO):
    def isatty(self):
        return True


def test_a_filtered_subset_moves_in_delivery_order_over_every_priority_list_and_a_worker_runs_it(
        redis_server, start_worker, unique):
    broker_url, backend_url = empty_db_url(redis_server), empty_db_url(redis_server)
    redis.Redis.from_url(broker_url).flushdb()
    adds = publish(broker_url, [(unique, p, (p, n)) for n in range(2) for p in (0, 5, 9)], transport_options=KEYPREFIX)
    others = send_tasks(broker_url, unique, "tests.app.echo", ["stay"], transport_options=KEYPREFIX)
    env = worker_env(broker_url, KEYPREFIX)
    dry = run_bin("cq-move", "-A", "tests.app", "-Q", unique, "--to", "dest", "--task", "*.add", "--dry-run", env=env)
    real = run_bin("cq-move", "-A", "tests.app", "-Q", unique, "--to", "dest", "--task", "*.add", "-f", env=env)
    assert real.status == 0 and dry.status == 0, (dry, real)
    assert without_dry_run(dry.records) == real.records and all(r["dry_run"] for r in dry.records)
    # delivery order: list 0 first (oldest first), then the lists of priority 5 (step 3) and 9
    assert ids_in(real.records) == [adds[0], adds[3], adds[1], adds[4], adds[2], adds[5]]
    assert all(r["moved_to"] == "dest" and r["queue"] == unique for r in real.records[:-1])
    assert real.records[-1] == {"type": "queue", "queue": unique, "moved": 6}
    client = redis.Redis.from_url(broker_url)
    assert [client.llen(f"pfx:dest{s}") for s in ("", "\x06\x163", "\x06\x166", "\x06\x169")] == [2, 2, 0, 2]
    peek = run_bin("cq-peek", "-A", "tests.app", unique, env=env)
    assert ids_in(peek.records) == others

    start_worker(broker_url, queues=["dest"], transport_options=KEYPREFIX, result_backend=backend_url,
                 result_extended=True, events=False)
    done = wait_done(backend_url, adds)
    assert {uuid: (done[uuid]["args"], done[uuid]["result"]) for uuid in adds} == \
        {uuid: ([p, n], p + n) for uuid, (p, n) in zip(adds, [(p, n) for n in range(2) for p in (0, 5, 9)])}


def test_ids_from_stdin_consent_and_bad_lines(fresh_redis_url, unique):
    url = fresh_redis_url
    ids = publish(url, [(unique, 0, (n, n)) for n in range(4)])
    refused = move("-b", url, "-Q", unique, "--to", "other")  # no TTY, no -f
    assert refused.status == 2 and "-f/--force" in refused.stderr and refused.stdout == b""
    out, err = io.BytesIO(), io.StringIO()
    status = cq_move.main(["-b", url, "-Q", unique, "--to", "other"],
                          io=IO(stdin=Terminal(b"n\n"), stdout=out, stderr=err))
    assert status == 1 and out.getvalue() == b"" and f"{unique} -> other: 4 messages" in err.getvalue()
    needs_force = move("-b", url, "-Q", unique, "--to", "other", "-", stdin=ids[1].encode())
    assert needs_force.status == 2 and "-f/--force" in needs_force.stderr

    stdin = f'{{"type":"message","uuid":"{ids[1]}"}}\n{{"no":"id"}}\n{ids[3]}\n'.encode()
    result = move("-b", url, "-Q", unique, "--to", "other", "-f", "-", stdin=stdin)
    assert result.status == 65 and "<stdin>:2: no uuid or id or task_id or request.id field" in result.stderr
    assert ids_in(result.records) == [ids[1], ids[3]]
    nothing = move("-b", url, "-Q", unique, "--to", "other", "-f", "-", stdin=b"")
    assert nothing.status == 0 and nothing.stdout == b"" and "nothing moved" in nothing.stderr
    assert move("-b", url, "-Q", "", "--to", "x").status == 2
    assert move("-b", url, "-Q", unique, "--to", unique, "-f").status == 2
    assert move("-b", url, "-Q", "nosuchqueue", "--to", "x", "-f").status == 1


@pytest.mark.parametrize("direction", ["redis-to-rabbitmq", "rabbitmq-to-redis"])
def test_between_brokers_a_worker_runs_each_task(redis_server, rabbit_vhost, start_worker, unique, direction):
    redis_url = empty_db_url(redis_server)
    redis.Redis.from_url(redis_url).flushdb()
    backend_url = empty_db_url(redis_server)
    rabbit_url = rabbit_vhost.url()
    source, destination = (redis_url, rabbit_url) if direction == "redis-to-rabbitmq" else (rabbit_url, redis_url)
    if source == rabbit_url:  # the queue must exist on RabbitMQ before messages can wait in it
        start_worker(rabbit_url, queues=[unique], events=False).stop()
    else:
        start_worker(rabbit_url, queues=["dest"], events=False).stop()
    ids = send_tasks(source, unique, "tests.app.echo", [1, "two"], count=3, priority=0)
    result = move("-b", source, "-Q", unique, "--to-broker", destination, "--to", "dest", "-f")
    assert result.status == 0, result
    assert ids_in(result.records) == ids and result.records[-1]["moved"] == 3
    start_worker(destination, queues=["dest"], result_backend=backend_url, result_extended=True, events=False)
    done = wait_done(backend_url, ids)
    assert all(done[uuid]["result"] == {"args": [1, "two"], "kwargs": {}} for uuid in ids)


def test_rabbitmq_missing_destination_and_filtered_leftovers_come_back_in_order(rabbit_vhost, start_worker, unique):
    url = rabbit_vhost.url()
    start_worker(url, queues=[unique, f"{unique}-dest"], events=False).stop()
    ids = send_tasks(url, unique, "tests.app.add", [1, 1], count=5)
    missing = move("-b", url, "-Q", unique, "--to", "nowhere", "-f")
    assert missing.status == 1 and "declare it first" in missing.stderr
    result = move("-b", url, "-Q", unique, "--to", f"{unique}-dest", "--id", f"{ids[1]},{ids[3]}", "-f")
    assert result.status == 0 and ids_in(result.records) == [ids[1], ids[3]], result
    left = run_bin("cq-peek", "-b", url, unique, "-n", "0")
    assert ids_in(left.records) == [ids[0], ids[2], ids[4]]  # the order RabbitMQ gave them back in
    assert ids_in(run_bin("cq-peek", "-b", url, f"{unique}-dest").records) == [ids[1], ids[3]]


def test_kill_9_during_a_100k_move_then_rerun_loses_nothing(redis_server, unique, tmp_path):
    """Between two Redis databases (a move between brokers: publish, then remove): killed at random moments."""
    source, destination = empty_db_url(redis_server), empty_db_url(redis_server)
    for url in (source, destination):
        redis.Redis.from_url(url).flushdb()
    ids = fill_copies(source, unique, 100_000, unique)
    client = redis.Redis.from_url(source)
    argv = [os.path.join(BIN, "cq-move"), "-b", source, "-Q", unique, "--to-broker", destination, "-f"]
    rng = random.Random(13)
    for _ in range(3):
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        moved_before = redis.Redis.from_url(destination).llen(unique)
        wait_for(lambda: redis.Redis.from_url(destination).llen(unique) > moved_before + rng.randrange(1, 20_000),
                 30, "cq-move to make progress")
        process.send_signal(signal.SIGKILL)
        process.wait()
    final = subprocess.run(argv, capture_output=True)
    assert final.returncode == 0, final.stderr
    found = set()
    for url in (source, destination):
        for raw in redis.Redis.from_url(url).lrange(unique, 0, -1):
            found.add(raw.split(b'"id": "', 1)[1][:36].decode())
    assert client.llen(unique) == 0 and found == set(ids)


def test_purge_filters_and_trims_at_the_boundaries_over_priority_lists(fresh_redis_url, unique):
    url = fresh_redis_url

    def fill():
        purge("-b", url, "-Q", unique, "-f")
        return publish(url, [(unique, p, (p, n)) for n in range(2) for p in (0, 9)])

    ids = fill()
    order = [ids[0], ids[2], ids[1], ids[3]]  # list 0 (oldest first), then list 9
    poison = purge("-b", url, "-Q", unique, "--id", ids[2], "-f")
    assert ids_in(poison.records) == [ids[2]] and poison.records[-1]["purged"] == 1
    dry = purge("-b", url, "-Q", unique, "--task", "tests.*", "--dry-run")
    real = purge("-b", url, "-Q", unique, "--task", "tests.*", "-f")
    assert without_dry_run(dry.records) == real.records and ids_in(real.records) == [ids[0], ids[1], ids[3]]

    def left():
        return ids_in(run_bin("cq-peek", "-b", url, unique, "-n", "0").records)

    cases = [(["--drop", "0"], order), (["--keep", "0"], []), (["--drop", "4"], []), (["--keep", "4"], order),
             (["--drop", "9"], []), (["--keep", "9"], order), (["--drop", "1"], order[1:]),
             (["--drop", "3", "--newest"], order[:1]), (["--keep", "3"], order[:3]),
             (["--keep", "1", "--newest"], order[3:])]
    for trim, expected in cases:
        ids = fill()
        order = [ids[0], ids[2], ids[1], ids[3]]
        expected = [order[[*cases[0][1]].index(i)] if False else i for i in expected]
        dry = purge("-b", url, "-Q", unique, *trim, "--dry-run")
        real = purge("-b", url, "-Q", unique, *trim, "-f")
        assert real.status == 0 and without_dry_run(dry.records) == real.records, (trim, real)
        assert real.records[0]["purged"] == 4 - len(left()), trim
    assert purge("-b", url, "-Q", unique, "--newest", "-f").status == 2
    assert purge("-b", url, "-Q", unique, "--keep", "1", "--task", "x", "-f").status == 2


def test_rabbitmq_trims_what_is_possible(rabbit_vhost, start_worker, unique):
    url = rabbit_vhost.url()
    start_worker(url, queues=[unique], events=False).stop()
    ids = send_tasks(url, unique, "tests.app.add", [1, 1], count=4)
    for refused in (["--keep", "1"], ["--drop", "1", "--newest"]):
        result = purge("-b", url, "-Q", unique, *refused, "-f")
        assert result.status == 2 and "only --drop N" in result.stderr
    assert purge("-b", url, "-Q", unique, "--drop", "3", "--dry-run").records[0]["purged"] == 3
    assert purge("-b", url, "-Q", unique, "--drop", "3", "-f").records == \
        [{"type": "queue", "queue": unique, "purged": 3}]
    assert ids_in(run_bin("cq-peek", "-b", url, unique).records) == ids[3:]


# The hot path's own encoders, against kombu's and py-amqp's ------------------------------

header_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 63, 2 ** 63 - 1) | st.floats() | st.text(max_size=8)
    | st.binary(max_size=8) | st.decimals(places=2, min_value=-99, max_value=99) | st.datetimes()
    | st.sampled_from([2147483647, 2147483648, -2147483647, -2147483648, 0.0, -0.0, 2 ** 64]),
    lambda inner: st.lists(inner, max_size=3) | st.lists(inner, max_size=3).map(tuple)
    | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=10)
amqp_properties = st.fixed_dictionaries({}, optional={
    "content_type": st.sampled_from(["application/json", "", "x" * 256, 3]),
    "content_encoding": st.sampled_from(["utf-8", "binary"]),
    "application_headers": st.dictionaries(st.text(max_size=6) | st.sampled_from(["k" * 256, b"raw"]),
                                           header_values, max_size=6),
    "delivery_mode": st.sampled_from([1, 2, True, 300]), "priority": st.integers(0, 9),
    "correlation_id": st.text(max_size=40), "reply_to": st.text(max_size=8), "expiration": st.sampled_from(["60000"]),
    "message_id": st.text(max_size=8), "timestamp": st.integers(0, 2 ** 40), "type": st.text(max_size=4),
    "user_id": st.text(max_size=4), "app_id": st.text(max_size=4), "cluster_id": st.text(max_size=4)})


def _written_or_raised(frames_of, *args):
    try:
        return frames_of(*args)
    except Exception as exc:  # noqa: BLE001 (what py-amqp raises, this must raise too)
        return type(exc)


EDGES = {"int32": [2147483647, 2147483648, -2147483647, -2147483648], "zeros": [0.0, -0.0], "big": 2 ** 63 - 1,
         "flags": [True, False, 1, 0], "none": None, "nested": {"list": [], "tuple": (1, "a"), "raw": b"\xff"}}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(amqp_properties, st.binary(max_size=300) | st.text(max_size=20), st.sampled_from([4096, 131072]),
       st.booleans(), st.booleans())
@example({"application_headers": EDGES, "priority": 0}, b"x" * 5000, 4096, True, False)
def test_publish_frames_are_py_amqps_byte_for_byte(properties, body, frame_max, mandatory, immediate):
    """A move between brokers writes its publishes itself, in one write: the bytes are py-amqp's own."""
    from amqp import Message

    def message():
        return Message(body, **properties)  # py-amqp may set content_encoding on a text body: one each

    args = (7, frame_max, "", "celery", mandatory, immediate)
    assert _written_or_raised(lambda: publish_frames.publish_frames(args[0], frame_max, message(), *args[2:])) \
        == _written_or_raised(lambda: publish_frames.py_amqp_frames(args[0], frame_max, message(), *args[2:]))


def test_a_celery_message_is_encoded_here_not_by_the_fallback(fresh_redis_url, unique):
    from amqp import Message

    from celops.core.transport import envelope_of_kombu

    publish(fresh_redis_url, [(unique, 5, (1, 2))])
    envelope = envelope_of_kombu(orjson.loads(redis.Redis.from_url(fresh_redis_url).rpop(f"{unique}\x06\x163")))
    message = Message(envelope.body, content_type=envelope.content_type, content_encoding=envelope.content_encoding,
                      application_headers=envelope.headers, **envelope.properties)
    assert tuple(Message.PROPERTIES) == publish_frames.PROPERTIES
    for _ in range(2):  # encoded, then from the kept items
        assert publish_frames._frames(1, 131072, message, "", unique, True, False) \
            == publish_frames.py_amqp_frames(1, 131072, message, "", unique, True, False)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8) | st.sampled_from(["", '"', "\\", "\x7f", "\u2028", "\ud7ff", "a b"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=10)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_kombu_json_is_kombus(value):
    """What a move writes of an envelope (parsed from JSON) is what kombu's dumps writes of it."""
    from kombu.utils.json import dumps

    from celops.core.redis_move import _kombu_json

    assert _kombu_json(value) == dumps(value)


envelopes = st.fixed_dictionaries({"body": st.text(max_size=20), "headers": st.dictionaries(
    st.sampled_from(["id", "task", "delivery_info", "delivery_tag", "x"]), json_values, max_size=4)},
    optional={"properties": st.fixed_dictionaries({}, optional={
        "delivery_info": st.dictionaries(st.sampled_from(["exchange", "routing_key", "priority"]), json_values)
        | st.sampled_from([{"exchange": "", "routing_key": "q"}, None, 3]),
        "delivery_tag": st.text(max_size=40) | st.sampled_from(["dc87e9d1-5a2a-4a39-9d37-a085be494c4e", 7]),
        "priority": st.integers(0, 9)})})


@settings(max_examples=400, deadline=None)
@given(envelopes, st.booleans())
def test_a_readdressed_envelope_is_what_kombu_writes_on_publish(envelope, twice):
    """Re-addressed in place or written out again, the bytes are kombu's own: its dumps of the envelope with
    the destination's delivery_info and the new tag, as its virtual transport's publish sets them."""
    from kombu.utils.json import dumps

    from celops.core.redis_move import readdressed

    raw = dumps(envelope).encode()
    expected = copy.deepcopy(envelope)
    properties = expected.get("properties")
    if isinstance(properties, dict) and (properties.get("delivery_info") is None
                                         or isinstance(properties["delivery_info"], dict)):
        properties["delivery_info"] = dict(properties.get("delivery_info") or {}, exchange="", routing_key="dest")
        properties["delivery_tag"] = "0e2dfc6a-4b8f-4c8a-9a36-4e7c3d1e2f00"
    for _ in range(1 + twice):  # the second time from the remembered delivery_info texts
        copied = readdressed(raw, orjson.loads(raw), "dest", "0e2dfc6a-4b8f-4c8a-9a36-4e7c3d1e2f00")
        assert copied == dumps(expected).encode() or (copied == raw and expected == envelope)


def test_delivery_tags_are_uuid4s():
    tags = fresh_delivery_tags(5000)
    assert len(set(tags)) == 5000 and all(str(uuid.UUID(tag, version=4)) == tag for tag in tags)


def test_a_list_touched_between_read_and_move_is_moved_by_the_script(fresh_redis_url, unique):
    """The oldest run leaves in one watched transaction; a message pushed meanwhile voids it, and the script
    moves them one by one: nothing lost, nothing twice, the newcomer left alone."""
    from celops.core.broker import Broker
    from celops.core.selection import Selection

    ids = publish(fresh_redis_url, [(unique, 0, (n, n)) for n in range(5)])
    client = redis.Redis.from_url(fresh_redis_url)
    client.config_resetstat()
    broker = Broker(fresh_redis_url, "-b")
    with broker.transport.queue_work(unique, 5.0, print) as work:
        move_within = work.move_within("dest")

        def meddling(index, picked, oldest):
            assert oldest
            client.lpush(unique, b"newcomer")
            return move_within.apply(index, picked, oldest)
        moved = [record["uuid"] for record in work.walk(Selection(limit=5), move_within._replace(apply=meddling))]
    assert moved == ids
    assert client.lrange(unique, 0, -1) == [b"newcomer"]
    assert [orjson.loads(raw)["headers"]["id"] for raw in reversed(client.lrange("dest", 0, -1))] == ids
    stats = client.info("commandstats")
    assert stats["cmdstat_exec"]["calls"] >= 1 and stats["cmdstat_eval"]["calls"] >= 1
