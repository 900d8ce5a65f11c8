"""cres: results of real workers by id (Redis, SQLite, PostgreSQL; result_extended on and off), listing and
counting, pickle never unpickled, --forget's consent, and no task code imported."""

import io
import os
import subprocess
import sys
import uuid

import pytest

from celops.commands import cres as cres_command
from celops.core.cli import IO
from tests.conftest import empty_db_url
from tests.results_support import PostgresDatabase, backend_app, cres, sqlite_url, wait_done
from tests.support import ROOT, send_tasks, undocumented_fields

EXTENDED = ("name", "args", "kwargs", "worker", "retries", "queue")


def run_tasks(broker_url, worker):
    """One task of each ending: success, failure, success after a retry, failure after its retries, revoked."""
    from celery import Celery

    ids = {"add": send_tasks(broker_url, "celery", "tests.app.add", [2, 2])[0],
           "fail": send_tasks(broker_url, "celery", "tests.app.fail", ["card declined"])[0],
           "retried": send_tasks(broker_url, "celery", "tests.app.flaky", [1])[0],
           "gave_up": send_tasks(broker_url, "celery", "tests.app.flaky", [], kwargs={"failures": 5})[0]}
    revoked = str(uuid.uuid4())
    control = Celery("celops-test-revoke", broker=broker_url, set_as_current=False)
    try:
        assert control.control.revoke(revoked, destination=[worker.hostname], reply=True, timeout=10)
    finally:
        control.close()
    ids["revoked"] = send_tasks(broker_url, "celery", "tests.app.add", [1, 1], task_id=revoked)[0]
    return ids


def check_lookup(backend_url, broker_url, worker, extended):
    ids = run_tasks(broker_url, worker)
    records = wait_done(backend_url, list(ids.values()))
    add, fail, retried, gave_up, revoked = (records[ids[key]] for key in
                                            ("add", "fail", "retried", "gave_up", "revoked"))
    assert add["state"] == "SUCCESS" and add["result"] == 4 and add["traceback"] is None
    assert add["date_done"].endswith("+00:00") and add["children"] == []
    assert fail["state"] == "FAILURE" and fail["result"]["exc_type"] == "ValueError"
    assert fail["result"]["exc_message"] == ["card declined"] and "ValueError" in fail["traceback"]
    assert retried["state"] == "SUCCESS" and retried["result"] == "ok"
    assert gave_up["state"] == "FAILURE" and gave_up["result"]["exc_type"] == "RuntimeError"
    assert revoked["state"] == "REVOKED"
    if extended:
        assert {key: add[key] for key in EXTENDED} == {"name": "tests.app.add", "args": [2, 2], "kwargs": {},
                                                       "worker": worker.hostname, "retries": 0, "queue": "celery"}
        assert fail["name"] == "tests.app.fail" and fail["args"] == ["card declined"]
        assert retried["retries"] == 1 and gave_up["retries"] == 3 and gave_up["kwargs"] == {"failures": 5}
    else:
        for record in (add, fail, retried, gave_up):
            assert not set(EXTENDED) & set(record), record
    for record in records.values():
        assert undocumented_fields(record) == [] and "known" not in record

    unknown = cres("--backend", backend_url, "no-such-task").records
    assert unknown == [{"type": "result", "uuid": "no-such-task", "state": "PENDING", "result": None,
                        "traceback": None, "date_done": None, "children": [], "known": False}]
    piped = cres("--backend", backend_url, "-", stdin=f'{{"uuid":"{ids["fail"]}"}}\n{ids["add"]}\nbad line\n'.encode())
    assert piped.status == 65 and "<stdin>:3:" in piped.stderr
    assert [record["uuid"] for record in piped.records] == [ids["fail"], ids["add"]]

    failed = cres("--backend", backend_url, "--state", "FAILURE")
    assert failed.status == 0, failed
    assert {record["uuid"] for record in failed.records} == {ids["fail"], ids["gave_up"]}
    counts = cres("--backend", backend_url, "--count")
    assert {record["state"]: record["count"] for record in counts.records} == {"SUCCESS": 2, "FAILURE": 2,
                                                                             "REVOKED": 1}
    named = cres("--backend", backend_url, "--name", "tests.app.fl*", "--since", "1h").records
    assert {record["uuid"] for record in named} == ({ids["retried"], ids["gave_up"]} if extended else set())
    return ids


@pytest.mark.parametrize("extended", [True, False], ids=["extended", "plain"])
@pytest.mark.parametrize("kind", ["redis", "sqlite"])
def test_lookup_list_and_count_of_real_results(kind, extended, redis_server, tmp_path, start_worker):
    broker_url = empty_db_url(redis_server)
    backend_url = empty_db_url(redis_server) if kind == "redis" else sqlite_url(str(tmp_path))
    worker = start_worker(broker_url, result_backend=backend_url, result_extended=extended, events=False)
    check_lookup(backend_url, broker_url, worker, extended)


def test_postgresql(redis_server, start_worker):
    broker_url = empty_db_url(redis_server)
    with PostgresDatabase() as database:
        empty = cres("--backend", database.url(), "--state", "FAILURE")  # no table yet: nothing, and none made
        assert empty.status == 0 and empty.records == [], empty
        worker = start_worker(broker_url, result_backend=database.url(), result_extended=True, events=False)
        check_lookup(database.url(), broker_url, worker, extended=True)


def test_state_failure_lists_exactly_the_failed_among_10k(fresh_redis_url):
    backend = backend_app(fresh_redis_url).backend
    failed = set()
    for number in range(10_000):
        task_id = f"task-{number}"
        if number % 97 == 0:
            backend.mark_as_failure(task_id, ValueError(number), traceback="Traceback ...")
            failed.add(task_id)
        else:
            backend.store_result(task_id, number, "SUCCESS" if number % 5 else "REVOKED")
    listed = cres("--backend", fresh_redis_url, "--state", "FAILURE")
    assert listed.status == 0, listed
    assert [record["uuid"] for record in listed.records if record["uuid"] in failed] == \
        [record["uuid"] for record in listed.records] and len(listed.records) == len(failed)
    limited = cres("--backend", fresh_redis_url, "--state", "FAILURE,REVOKED", "-n", "7")
    assert len(limited.records) == 7 and {record["state"] for record in limited.records} <= {"FAILURE", "REVOKED"}


def test_pickle_is_never_unpickled_unless_asked(fresh_redis_url, tmp_path):
    """A pickled result that would run code when unpickled is shown as bytes, and runs nothing."""
    marker = tmp_path / "unpickled"

    class Trap:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    backend = backend_app(fresh_redis_url, serializer="pickle").backend
    backend.store_result("pickled", Trap(), "SUCCESS")
    backend.store_result("harmless", {"answer": 42}, "SUCCESS")
    shown = cres("--backend", fresh_redis_url, "pickled", "harmless")
    assert shown.status == 0, shown
    assert [record["result"] for record in shown.records][0].startswith("<pickle, ")
    assert shown.records[0]["state"] is None and "--unsafe-pickle" in shown.stderr
    listed = cres("--backend", fresh_redis_url, "--count")
    assert listed.records == [{"type": "count", "state": None, "count": 2}]
    assert not marker.exists()
    trusted = cres("--backend", fresh_redis_url, "--unsafe-pickle", "harmless")
    assert trusted.records[0]["state"] == "SUCCESS" and trusted.records[0]["result"] == {"answer": 42}


class Terminal(io.BytesIO):
    def isatty(self):
        return True


def test_forget_asks_refuses_without_a_terminal_and_dry_runs_exactly(tmp_path):
    url = sqlite_url(str(tmp_path))
    backend = backend_app(url).backend
    for number in range(3):
        backend.mark_as_failure(f"failed-{number}", ValueError(number))
    backend.store_result("kept", 1, "SUCCESS")

    refused = cres("--backend", url, "--state", "FAILURE", "--forget")
    assert refused.status == 2 and "-f/--force" in refused.stderr and refused.stdout == b""
    dry = cres("--backend", url, "--state", "FAILURE", "--forget", "--dry-run")
    assert dry.status == 0 and len(dry.records) == 3
    assert all(record["forgotten"] and record["dry_run"] for record in dry.records)

    out, err = io.BytesIO(), io.StringIO()
    declined = cres_command.main(["--backend", url, "--state", "FAILURE", "--forget"],
                                 io=IO(stdin=Terminal(b"n\n"), stdout=out, stderr=err))
    assert declined == 1 and "FAILURE: 3 results" in err.getvalue() and "[y/N]" in err.getvalue()
    assert len(cres("--backend", url, "--state", "FAILURE").records) == 3

    forgotten = cres("--backend", url, "--state", "FAILURE", "--forget", "-f")
    assert [{**record, "dry_run": True} for record in forgotten.records] == dry.records
    assert cres("--backend", url, "--count").records == [{"type": "count", "state": "SUCCESS", "count": 1}]
    by_id = cres("--backend", url, "-", "--forget", "-f", stdin=b"kept\nnever-stored\n")
    assert [record.get("forgotten") for record in by_id.records] == [True, None]
    assert cres("--backend", url, "kept").records[0]["known"] is False


@pytest.mark.parametrize("argv, message", [
    (["--backend", "cache+memory://", "--state", "FAILURE"], "cannot list"),
    (["--backend", "redis://127.0.0.1:1/0", "x", "--state", "FAILURE"], "without task ids"),
    (["--backend", "redis://127.0.0.1:1/0", "--state", ""], "empty state"),
    (["--backend", "redis://127.0.0.1:1/0"], "give task ids"),
    (["--backend", "redis://127.0.0.1:1/0", "--since", "soon", "--count"], "not a duration"),
    (["x"], "no result backend"),
])
def test_usage_errors(argv, message, monkeypatch):
    monkeypatch.delenv("CELOPS_RESULT_BACKEND", raising=False)
    result = cres(*argv)
    assert result.status == 2 and message in result.stderr, result


def test_unreachable_backend_and_missing_driver():
    down = cres("--backend", "redis://:hunter2@127.0.0.1:1/0", "-t", "1", "some-id")
    assert down.status == 69 and "cannot reach result backend redis://:***@127.0.0.1:1/0" in down.stderr, down
    assert "hunter2" not in down.stderr
    missing = cres("--backend", "db+mysql://user:hunter2@127.0.0.1/results", "some-id")
    assert missing.status == 78 and "MySQLdb" in missing.stderr and "hunter2" not in missing.stderr, missing


def test_no_task_code_is_imported(fresh_redis_url):
    """cres and csend name tasks, never import them: tests.app is not loaded, whatever they read or send."""
    backend_app(fresh_redis_url, extended=True).backend.store_result("one", 1, "SUCCESS")
    script = ("import sys; from celops.commands import cres, csend; "
              f"a = cres.main(['--backend', {fresh_redis_url!r}, 'one']); "
              f"b = csend.main(['-b', {fresh_redis_url!r}, 'tests.app.add', '--args', '[1, 2]']); "
              "sys.exit(3 if any(m == 'tests' or m.startswith('tests.') for m in sys.modules) else a or b)")
    proc = subprocess.run([sys.executable, "-c", script], cwd="/", env=dict(os.environ, PYTHONPATH=ROOT),
                          capture_output=True)
    assert proc.returncode == 0, proc.stderr
