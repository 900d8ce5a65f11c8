"""ccheck: each check provoked for real, on real brokers with real workers, and its finding seen."""

import os
import signal
import subprocess
import time

import pytest
import redis

from celops.checks import AREAS
from celops.commands import ccheck
from tests.conftest import BIN, run_bin, run_command
from tests.support import pattern_subscribers, poll, send_tasks, undocumented_fields


def check(url, *args):
    """ccheck on ``url``; returns the Result with its findings as records."""
    return run_command(ccheck.main, ["-b", url, "--sample", "1", *args])


def findings(result, check_id):
    return [record for record in result.records if record["check"] == check_id]


def test_a_healthy_cluster_gives_exit_0_and_no_output(fresh_redis_url, start_worker):
    worker = start_worker(fresh_redis_url)
    result = check(fresh_redis_url, "-d", worker.hostname)
    assert (result.status, result.stdout) == (0, b""), result
    verbose = check(fresh_redis_url, "-d", worker.hostname, "-v")
    assert {record["severity"] for record in verbose.records} == {"ok"}
    every_check = [record["check"] for record in run_command(ccheck.main, ["--list"]).records]
    assert [record["check"] for record in verbose.records] == every_check
    assert [field for record in verbose.records for field in undocumented_fields(record)] == []


def test_a_queue_with_messages_and_no_consumer_is_critical(broker_url, start_worker, unique):
    worker = start_worker(broker_url)
    send_tasks(broker_url, unique, "tests.app.add", [1, 2], count=3)
    result = check(broker_url, "-d", worker.hostname)
    (found,) = findings(result, "queues.consumers")
    assert (found["severity"], found["subject"], found["value"]) == ("crit", unique, 3), result
    assert f"-Q {unique}" in found["hint"]
    assert result.status == 3


def test_a_stopped_worker_does_not_answer_and_sends_no_heartbeat(fresh_redis_url, start_worker):
    worker = start_worker(fresh_redis_url)
    worker.kill(signal.SIGSTOP)
    try:
        result = check(fresh_redis_url, "-d", worker.hostname)
    finally:
        worker.kill(signal.SIGCONT)
    assert [(f["severity"], f["subject"]) for f in findings(result, "workers.ping")] == [
        ("crit", "workers"), ("crit", worker.hostname)], result
    (late,) = findings(result, "workers.heartbeat")
    assert (late["severity"], late["subject"]) == ("warn", worker.hostname)
    assert result.status == 3


def test_workers_of_one_queue_with_different_registered_tasks(fresh_redis_url, start_worker):
    old = start_worker(fresh_redis_url)
    new = start_worker(fresh_redis_url, env={"CELOPS_TEST_EXTRA_TASK": "1"})
    result = check(fresh_redis_url, "-d", f"{old.hostname},{new.hostname}")
    (found,) = findings(result, "workers.registered")
    assert (found["severity"], found["subject"], found["value"]) == ("warn", old.hostname, 1), result
    assert "tests.app.extra" in found["message"]
    assert result.status == 1


def test_an_eta_beyond_the_visibility_timeout_on_redis(fresh_redis_url, start_worker):
    worker = start_worker(fresh_redis_url, transport_options={"visibility_timeout": 5})
    send_tasks(fresh_redis_url, "celery", "tests.app.add", [1, 2], countdown=120)
    result = poll(lambda: check(fresh_redis_url, "-d", worker.hostname),
                  lambda result: findings(result, "queues.eta"), 20, "the ETA finding")
    (found,) = findings(result, "queues.eta")
    assert (found["severity"], found["subject"], found["threshold"]) == ("warn", worker.hostname, 5.0)
    assert 100 < found["value"] <= 120
    assert result.status == 1


def test_a_leaked_reply_queue_on_redis(fresh_redis_url):
    client = redis.Redis.from_url(fresh_redis_url)
    client.lpush("0c0ffee0-0000-4000-8000-000000000000.reply.celery.pidbox", b"{}")
    result = check(fresh_redis_url, "--check", "queues.leaks")
    (found,) = result.records
    assert (found["severity"], found["value"]) == ("warn", 1), result
    assert "0c0ffee0-0000-4000-8000-000000000000.reply.celery.pidbox" in found["message"]
    assert found["hint"].startswith("redis-cli -n ") and " DEL " in found["hint"]


def test_a_leaked_reply_queue_on_rabbitmq(rabbit_vhost, unique):
    import kombu

    name = f"{unique}.reply.celery.pidbox"
    with kombu.Connection(rabbit_vhost.url()) as connection:
        connection.default_channel.queue_declare(name, auto_delete=False)
        try:
            result = poll(lambda: check(rabbit_vhost.url(), "--check", "queues.leaks"),
                          lambda result: result.records, 20, "the leak finding")
        finally:
            connection.default_channel.queue_delete(name)
    (found,) = result.records
    assert found["severity"] == "warn" and name in found["message"], result


def test_a_poisoned_reply_binding_member_is_named_with_its_removal(fresh_redis_url):
    """A client with sep "|" binds a member the workers cannot split: every broadcast reply fails."""
    client = redis.Redis.from_url(fresh_redis_url)
    client.sadd("_kombu.binding.reply.celery.pidbox", b"abc||abc.reply.celery.pidbox")
    result = check(fresh_redis_url, "--check", "queues.binding")
    (found,) = result.records
    assert (found["severity"], found["subject"]) == ("crit", "abc||abc.reply.celery.pidbox"), result
    db = fresh_redis_url.rsplit("/", 1)[1]
    assert found["hint"] == f"redis-cli -n {db} SREM _kombu.binding.reply.celery.pidbox 'abc||abc.reply.celery.pidbox'"
    assert result.status == 3


def test_failing_tasks_in_the_sample(fresh_redis_url, start_worker):
    worker = start_worker(fresh_redis_url)
    readers = pattern_subscribers(fresh_redis_url)
    process = subprocess.Popen([os.path.join(BIN, "ccheck"), "-b", fresh_redis_url, "-t", "10", "--sample", "6",
                                "--check", "tasks", "-d", worker.hostname],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    poll(lambda: pattern_subscribers(fresh_redis_url), lambda count: count > readers, 10, "ccheck's event reader")
    send_tasks(fresh_redis_url, "celery", "tests.app.fail", ["boom"], count=3)
    out, err = process.communicate(timeout=30)
    records = [__import__("orjson").loads(line) for line in out.splitlines()]
    assert [(r["check"], r["severity"], r["subject"], r["value"]) for r in records] == [
        ("tasks.failures", "warn", "tests.app.fail", 1.0)], err
    assert process.returncode == 1


def test_an_unreachable_broker_is_critical_within_the_deadline():
    started = time.monotonic()
    result = run_bin("ccheck", "-b", "redis://127.0.0.1:1/0", "-t", "2")
    assert time.monotonic() - started < 5
    assert result.status == 3 and result.stderr == "", result
    assert [(r["check"], r["severity"]) for r in result.records] == [
        ("broker.reachable", "crit"), *((area, "unknown") for area in AREAS)]
    every_check = [record["check"] for record in run_command(ccheck.main, ["--list"]).records]
    assert sum(record["value"] for record in result.records[1:]) == len(every_check) - 1
    assert "checks could not run (-v names each): the broker cannot be reached" in result.records[2]["message"]
    verbose = run_bin("ccheck", "-b", "redis://127.0.0.1:1/0", "-t", "2", "-v")
    assert [record["check"] for record in verbose.records] == every_check
    assert {record["severity"] for record in verbose.records[1:]} == {"unknown"}


def test_an_unreachable_broker_counts_each_check_in_prometheus(tmp_path):
    path = tmp_path / "ccheck.prom"
    result = run_bin("ccheck", "-b", "redis://127.0.0.1:1/0", "-t", "2", "--textfile", str(path))
    assert result.status == 3, result
    text = path.read_text()
    assert 'celops_check_severity{check="broker.reachable"} 3.0' in text
    assert 'celops_check_severity{check="queues.leaks"} -1.0' in text


def test_a_worker_that_does_not_answer_in_time_is_unknown_not_a_hang(fresh_redis_url):
    """No worker at all: ping is crit, the broker's checks still run, and the run ends within -t."""
    started = time.monotonic()
    result = check(fresh_redis_url, "-t", "3")
    assert time.monotonic() - started < 4.5
    assert [(f["severity"], f["subject"]) for f in findings(result, "workers.ping")] == [("crit", "workers")]
    assert result.status == 3


def test_list_check_and_skip(fresh_redis_url):
    listed = run_command(ccheck.main, ["--list"])
    ids = [record["check"] for record in listed.records]
    assert listed.status == 0 and len(ids) == len(set(ids)) > 20
    assert [field for record in listed.records for field in undocumented_fields(record)] == []
    chosen = run_command(ccheck.main, ["--list", "--check", "queues", "--skip", "queues.age"])
    assert [r["check"] for r in chosen.records] == [i for i in ids if i.startswith("queues.") and i != "queues.age"]
    wrong = run_command(ccheck.main, ["--list", "--check", "queues.nope"])
    assert wrong.status == 2 and "no check 'queues.nope'" in wrong.stderr


def test_prometheus_textfile_has_one_gauge_per_check(fresh_redis_url, tmp_path):
    path = tmp_path / "ccheck.prom"
    result = check(fresh_redis_url, "--check", "broker,workers.ping", "--textfile", str(path))
    assert result.stdout == b"" and result.status == 3
    text = path.read_text()
    assert 'celops_check_severity{check="broker.reachable"} 0.0' in text
    assert 'celops_check_severity{check="workers.ping"} 3.0' in text
    assert 'celops_check_findings{check="workers.ping"} 1.0' in text
    assert "celops_check_duration_seconds " in text


@pytest.mark.parametrize("argv", [["--max-failure-rate", "2"], ["--sample", "0"], ["--check", ""]])
def test_bad_thresholds_are_usage_errors(argv):
    result = run_command(ccheck.main, argv)
    assert result.status == 2 and "Traceback" not in result.stderr


def test_a_killed_workers_mailbox_binding_on_redis_is_a_leak_not_a_worker(fresh_redis_url, start_worker):
    """SIGKILL leaves the worker's member in _kombu.binding.celery.pidbox (kombu removes it only at shutdown)."""
    alive, killed = start_worker(fresh_redis_url), start_worker(fresh_redis_url)
    killed.kill()
    killed.process.wait(10)
    client = redis.Redis.from_url(fresh_redis_url)
    member = next(m for m in client.smembers("_kombu.binding.celery.pidbox") if killed.hostname.encode() in m)
    result = check(fresh_redis_url, "-d", alive.hostname, "--check", "workers.ping,workers.heartbeat,queues.leaks")
    assert [(r["check"], r["subject"], r["value"]) for r in result.records] == [
        ("queues.leaks", "mailbox bindings", 1)], result
    assert killed.hostname in result.records[0]["message"] and result.status == 1
    removal = result.records[0]["hint"].split(", then ", 1)[1]
    port = fresh_redis_url.rsplit(":", 1)[1].split("/")[0]
    subprocess.run(["bash", "-c", removal.replace("redis-cli", f"redis-cli -p {port}", 1)], check=True,
                   capture_output=True)
    assert member not in client.smembers("_kombu.binding.celery.pidbox")
    assert check(fresh_redis_url, "-d", alive.hostname, "--check", "queues.leaks").records == []
