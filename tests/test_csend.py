"""csend: a task by name that a real worker runs, the failed-task re-run pipeline, per-line refusals."""

import redis

from celops.commands import csend as csend_command
from tests.conftest import empty_db_url, run_command
from tests.results_support import cres, wait_done
from tests.support import send_tasks, undocumented_fields


def csend(*argv, stdin=b""):
    return run_command(csend_command.main, argv, stdin=stdin)


def test_a_task_by_name_runs_and_wait_prints_its_result(redis_server, start_worker):
    broker_url, backend_url = empty_db_url(redis_server), empty_db_url(redis_server)
    start_worker(broker_url, result_backend=backend_url, events=False)
    result = csend("-b", broker_url, "tests.app.add", "--args", "[2, 3]", "--wait", "--backend", backend_url,
                   "-t", "60")
    assert result.status == 0, result
    sent, done = result.records
    assert sent["type"] == "sent" and sent["name"] == "tests.app.add" and sent["queue"] == "celery"
    assert done["type"] == "result" and done["uuid"] == sent["uuid"] and done["result"] == 5
    assert undocumented_fields(sent) == [] and undocumented_fields(done) == []


def test_re_running_the_failed_tasks_with_their_original_arguments(redis_server, start_worker):
    broker_url, backend_url = empty_db_url(redis_server), empty_db_url(redis_server)
    start_worker(broker_url, result_backend=backend_url, result_extended=True, events=False)
    failed = [send_tasks(broker_url, "celery", "tests.app.fail", [f"card {n}"])[0] for n in range(3)]
    succeeded = send_tasks(broker_url, "celery", "tests.app.add", [1, 1])
    wait_done(backend_url, failed + succeeded)

    listed = cres("--backend", backend_url, "--state", "FAILURE", "--name", "tests.app.*")
    rerun = csend("-b", broker_url, "-", stdin=listed.stdout)
    assert rerun.status == 0, rerun
    assert sorted(record["args"] for record in rerun.records) == [["card 0"], ["card 1"], ["card 2"]]
    new_results = wait_done(backend_url, [record["uuid"] for record in rerun.records])
    assert sorted((record["name"], record["args"], record["kwargs"]) for record in new_results.values()) == \
        [("tests.app.fail", [f"card {n}"], {}) for n in range(3)]

    # echo returns what it ran with: kwargs and args survive the round trip exactly
    original = csend("-b", broker_url, "tests.app.echo", "--args", '[1, "two", [3]]', "--kwargs", '{"k": {"v": null}}')
    stored = wait_done(backend_url, [original.records[0]["uuid"]])
    again = csend("-b", broker_url, "-", stdin=cres("--backend", backend_url, *stored).stdout)
    rerun_result = wait_done(backend_url, [again.records[0]["uuid"]])
    assert next(iter(rerun_result.values()))["result"] == {"args": [1, "two", [3]], "kwargs": {"k": {"v": None}}}


def test_records_without_a_name_or_args_are_refused_per_line(fresh_redis_url):
    stdin = (b'{"name":"tests.app.add","args":[1,2]}\n'
             b'{"args":[1]}\n'
             b'{"type":"result","uuid":"x","state":"FAILURE","name":"tests.app.fail"}\n'
             b'{"task":"tests.app.add","args":"(1, 2)"}\n'
             b'{"task":"tests.app.add","args":[],"queue":"video"}\n')
    result = csend("-b", fresh_redis_url, "-", stdin=stdin)
    assert result.status == 65, result
    assert [line.split(":")[2] for line in result.stderr.splitlines()] == ["2", "3", "4"]
    assert "<stdin>:2: no task name" in result.stderr and "<stdin>:3: no args for tests.app.fail" in result.stderr
    assert [(record["name"], record["args"], record["queue"]) for record in result.records] == \
        [("tests.app.add", [1, 2], "celery"), ("tests.app.add", [], "video")]
    client = redis.Redis.from_url(fresh_redis_url)
    assert client.llen("celery") == 1 and client.llen("video") == 1


def test_dry_run_sends_nothing(fresh_redis_url):
    result = csend("-b", fresh_redis_url, "-", "--dry-run", "-Q", "other",
                   stdin=b'{"task":"a.b","args":[1],"kwargs":{"x":2},"queue":"video"}\n')
    assert result.status == 0, result
    assert result.records == [{"type": "sent", "uuid": None, "name": "a.b", "queue": "other", "args": [1],
                               "kwargs": {"x": 2}, "dry_run": True}]
    assert redis.Redis.from_url(fresh_redis_url).keys("*") == []


def test_cq_peek_records_and_options_are_sent_by_celery(fresh_redis_url):
    from celops.commands import cq_peek

    sent = csend("-b", fresh_redis_url, "tests.app.add", "--args", "[4, 5]", "-Q", "video", "--priority", "3",
                 "--header", "origin-team=ops", "--countdown", "30", "--rate", "100/s")
    assert sent.status == 0, sent
    peeked = run_command(cq_peek.main, ["-b", fresh_redis_url, "video"]).records
    assert len(peeked) == 1 and peeked[0]["uuid"] == sent.records[0]["uuid"]
    assert peeked[0]["args"] == [4, 5] and peeked[0]["priority"] == 3 and peeked[0]["eta"]
    assert peeked[0]["headers"]["origin-team"] == "ops"
    again = csend("-b", fresh_redis_url, "-", stdin=run_command(cq_peek.main, ["-b", fresh_redis_url, "video"]).stdout)
    assert again.status == 0 and again.records[0]["queue"] == "video" and again.records[0]["args"] == [4, 5]


def test_usage_errors(fresh_redis_url):
    for argv, message in [(["tests.app.add", "--args", "[1,"], "not JSON"),
                          (["tests.app.add", "--args", '{"a": 1}'], "not a JSON list"),
                          (["tests.app.add", "--kwargs", "[1]"], "not a JSON object"),
                          (["-", "--args", "[1]"], "takes them from each record"),
                          (["", "--args", "[1]"], "empty task name"),
                          (["x", "--eta", "tomorrow"], "not an ISO 8601 time"),
                          (["x", "--rate", "fast"], "not a rate")]:
        result = csend("-b", fresh_redis_url, *argv)
        assert result.status == 2 and message in result.stderr, (argv, result)
    assert redis.Redis.from_url(fresh_redis_url).keys("*") == []


def test_unreachable_broker_is_69_and_redacted():
    result = csend("-b", "redis://:hunter2@127.0.0.1:1/0", "-t", "1", "tests.app.add", "--args", "[1, 2]")
    assert result.status == 69 and "redis://:***@127.0.0.1:1/0" in result.stderr and "hunter2" not in result.stderr
    assert result.stdout == b""
