"""cq-len against real Redis (priority lists, global_keyprefix) and real RabbitMQ (management API and fallback)."""

import os
import signal
import subprocess

import orjson
from prometheus_client.parser import text_string_to_metric_families

from celops.commands import cq_len
from tests.conftest import BIN, run_bin, run_command
from tests.queue_support import publish
from tests.support import poll, worker_env

ODD_NAME = "with space ✓ ü"


def by_queue(result):
    return {record["queue"]: record for record in result.records}


def test_redis_lengths_by_priority(fresh_redis_url, unique):
    publish(fresh_redis_url, [(q, p, (p, 1)) for q in (unique, ODD_NAME) for p in range(10)] + [("celery", 0, (0, 0))])
    result = run_command(cq_len.main, ["-b", fresh_redis_url, unique, ODD_NAME])
    assert result.status == 0 and result.stderr == "", result
    records = by_queue(result)
    for name in (unique, ODD_NAME):
        assert records[name]["messages"] == records[name]["ready"] == 10
        assert records[name]["by_priority"] == {"0": 3, "3": 3, "6": 3, "9": 1}
        assert records[name]["unacked"] == 0 and records[name]["source"] == "redis"

    everything = by_queue(run_command(cq_len.main, ["-b", fresh_redis_url]))
    assert {unique: 10, ODD_NAME: 10, "celery": 1}.items() <= {q: r["messages"] for q, r in everything.items()}.items()

    listed = run_bin("cq-ls", "-b", fresh_redis_url).stdout
    piped = run_command(cq_len.main, ["-b", fresh_redis_url, "-"], stdin=listed + b"celery\n")
    assert piped.status == 0 and set(by_queue(piped)) == {unique, ODD_NAME, "celery"}, piped
    assert run_command(cq_len.main, ["-b", fresh_redis_url, "-"], stdin=b"").records == []
    bad = run_command(cq_len.main, ["-b", fresh_redis_url, "-"], stdin=b'{"name": "x"}\n{"queue": "celery"}\n')
    assert bad.status == 65 and [r["queue"] for r in bad.records] == ["celery"]
    assert bad.stderr == "cq-len: <stdin>:1: no queue field\n"


def test_redis_global_keyprefix_app(fresh_redis_url, unique):
    url = fresh_redis_url
    options = {"global_keyprefix": f"{unique}:"}
    publish(url, [(unique, p, (p, 1)) for p in (0, 5, 9)], transport_options=options)
    result = run_bin("cq-len", "-A", "tests.app", unique, env=worker_env(url, options))
    assert result.status == 0, result
    assert result.records[0]["by_priority"] == {"0": 1, "3": 1, "6": 0, "9": 1}
    unprefixed = run_bin("cq-len", "-b", url, unique)  # no prefix: the queue is not where cq-len looks
    assert unprefixed.status == 1 and unprefixed.records == [] and "unknown queue" in unprefixed.stderr


def test_prometheus_textfile_and_max(fresh_redis_url, unique, tmp_path):
    publish(fresh_redis_url, [(unique, p, (p, 1)) for p in (0, 3, 3, 9)])
    path = tmp_path / "celery.prom"
    result = run_command(cq_len.main, ["-b", fresh_redis_url, "--textfile", str(path), unique, ODD_NAME])
    assert result.status == 1 and result.stdout == b"" and "unknown queue" in result.stderr, result
    assert os.listdir(tmp_path) == ["celery.prom"]  # the temp file was renamed, not left behind
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(path.read_text()) for s in family.samples}
    assert samples[("celery_queue_length", (("queue", unique),))] == 4
    assert not [key for key in samples if ("queue", ODD_NAME) in key[1]]  # unknown: no sample, not a 0
    assert samples[("celery_queue_unacked", (("queue", unique),))] == 0
    assert samples[("celery_queue_priority_length", (("priority", "3"), ("queue", unique)))] == 2

    over = run_command(cq_len.main, ["-b", fresh_redis_url, "--max", "3", unique])
    assert over.status == 1 and f"{unique!r} holds more than 3" in over.stderr
    assert run_command(cq_len.main, ["-b", fresh_redis_url, "--max", "4", unique]).status == 0


def test_watch_streams_timestamped_batches(fresh_redis_url, unique):
    publish(fresh_redis_url, [(unique, 0, (1, 1)), ("other", 0, (1, 1))])
    proc = subprocess.Popen([os.path.join(BIN, "cq-len"), "-b", fresh_redis_url, "--watch", "0.1", unique, "other"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        records = [orjson.loads(proc.stdout.readline()) for _ in range(4)]
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 130
    assert [r["queue"] for r in records] == [unique, "other", unique, "other"]
    assert records[0]["timestamp"] == records[1]["timestamp"] < records[2]["timestamp"]
    assert records[0]["messages"] == 1


def test_rabbitmq_management_api(rabbit_vhost, unique):
    url = rabbit_vhost.url()
    odd = f"{ODD_NAME} {unique}"
    publish(url, [(q, p, (p, 1)) for q in (unique, odd) for p in range(10)])
    # The API fills a new queue's figures one sample at a time (source first, memory later): poll for all of them.
    record = poll(lambda: by_queue(run_command(cq_len.main, ["-b", url, unique, odd]))[odd],
                  lambda r: r["source"] == "amqp+management" and r["memory"] and r["stats_age"] is not None,
                  30, "the management API's figures, memory included")
    assert record["messages"] == record["ready"] == 10 and record["unacked"] == 0 and record["consumers"] == 0
    assert record["memory"] > 0 and record["by_priority"] is None and 0 <= record["stats_age"] < 60
    everything = by_queue(run_command(cq_len.main, ["-b", url]))
    assert {unique, odd} <= set(everything) and not any(".pidbox" in q for q in everything)


def test_rabbitmq_unreachable_management_api_falls_back_to_declare(rabbit_vhost, unique):
    url = rabbit_vhost.url()
    publish(url, [(unique, 0, (1, 1)), (unique, 0, (2, 1))])
    result = run_command(cq_len.main, ["-b", url, "--management-url", "http://127.0.0.1:1", "-t", "2",
                                       unique, f"{unique}-missing"])
    assert result.status == 1, result
    records = by_queue(result)
    assert records[unique] == {"type": "queue", "queue": unique, "messages": 2, "ready": 2, "unacked": None,
                               "consumers": 0, "memory": None, "by_priority": None, "source": "amqp",
                               "stats_age": None}
    assert f"{unique}-missing" not in records and f"unknown queue '{unique}-missing'" in result.stderr
    assert "counting by passive queue_declare only (no unacked or memory)" in result.stderr


def test_rabbitmq_counts_are_live_not_sampled(rabbit_vhost, unique):
    """Right after a publish or a purge cq-len says what the queue holds now, not the API's last sample."""
    import kombu

    url = rabbit_vhost.url()
    publish(url, [(unique, 0, (n, n)) for n in range(3)])
    poll(lambda: by_queue(run_command(cq_len.main, ["-b", url, unique]))[unique],
         lambda record: record["unacked"] is not None, 20, "the management API's figures for the queue")
    publish(url, [(unique, 0, (n, n)) for n in range(5)])
    record = by_queue(run_command(cq_len.main, ["-b", url, unique]))[unique]
    assert (record["messages"], record["ready"], record["source"]) == (8, 8, "amqp+management"), record
    with kombu.Connection(url) as connection:
        connection.default_channel.queue_purge(unique)
    record = by_queue(run_command(cq_len.main, ["-b", url, unique]))[unique]
    assert (record["messages"], record["ready"]) == (0, 0), record
