"""cev-cam --sink sql into PostgreSQL: the same history as SQLite, in a private database of the local server."""

import json
import os
import sqlite3
import subprocess
import time
import uuid

import psycopg
import pytest

from celops.commands import cev_cam
from tests.conftest import BIN, run_command
from tests.support import wait_for
from tests.test_cev_cam import T0, heartbeat, lifecycle, ndjson

SERVER = "postgresql://postgres@127.0.0.1:5432"


@pytest.fixture
def postgres_url():
    """A database of its own on the local PostgreSQL (user postgres, trust), dropped afterwards."""
    name = f"celops_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    yield f"{SERVER}/{name}"
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


def query(url, sql, *params):
    with psycopg.connect(url) as db:
        return db.execute(sql, params).fetchall()


def cam(database, *argv, stdin=b""):
    return run_command(cev_cam.main, ["--once", "--sink", "sql", "--database", database, *argv], stdin)


SENT_ONLY = {"type": "task-sent", "uuid": "c3", "name": "proj.add", "hostname": "client@h",
             "timestamp": T0, "clock": 0, "local_received": T0}  # no worker got it: no task timestamp
TASK_COLUMNS = "uuid, name, state, hostname, timestamp, received, started, succeeded, failed, runtime, retries, " \
               "exception"


def test_same_history_as_sqlite(postgres_url, tmp_path):
    """The same two runs into both: equal task rows and snapshot rows; --retain prunes both alike."""
    sqlite_path = str(tmp_path / "cam.db")
    first = ndjson(lifecycle("a1") + lifecycle("b2", start=T0 + 1)[:2] + [SENT_ONLY, heartbeat("w1@h", T0 + 2)]
                   + lifecycle("f4", start=T0 + 2, outcome="failed"))
    second = ndjson(lifecycle("b2", start=T0 + 1)[2:])
    for database in (sqlite_path, postgres_url):
        assert cam(database, stdin=first).status == 0
        assert cam(database, "--sink", "sqlite", stdin=second).status == 0  # the old spelling takes a URL too
    lite = sqlite3.connect(sqlite_path)
    tasks = f"SELECT {TASK_COLUMNS} FROM tasks ORDER BY uuid"
    assert query(postgres_url, tasks) == lite.execute(tasks).fetchall()
    assert [row[:3] for row in lite.execute(tasks)] == [
        ("a1", "proj.add", "SUCCESS"), ("b2", "proj.add", "SUCCESS"), ("c3", "proj.add", "PENDING"),
        ("f4", "proj.add", "FAILURE")]
    # timestamp is the stream's clock, which moves with the wall clock between the runs: all else is equal
    snapshots = "SELECT event_count, workers_alive, tasks, record FROM snapshots ORDER BY id"

    def undated(record):  # jsonb comes back parsed, SQLite's text does not
        return {key: value for key, value in record.items() if key != "timestamp"}
    ours = [(*row[:3], undated(row[3])) for row in query(postgres_url, snapshots)]
    assert ours == [(*row[:3], undated(json.loads(row[3]))) for row in lite.execute(snapshots)]
    assert len(ours) == 2 and ours[0][3]["tasks"]["by_state"] == {"SUCCESS": 1, "STARTED": 1, "PENDING": 1,
                                                                   "FAILURE": 1}
    # every task row points at the snapshot that last wrote it, as in SQLite
    links = "SELECT t.uuid, s.event_count FROM tasks t JOIN snapshots s ON s.id = t.snapshot_id ORDER BY t.uuid"
    assert query(postgres_url, links) == lite.execute(links).fetchall()
    lite.close()
    for database in (sqlite_path, postgres_url):
        assert cam(database, "--retain", "1").status == 0  # rows from 2023: pruned; the new shot stays
    assert query(postgres_url, "SELECT count(*) FROM tasks") == [(0,)]
    assert query(postgres_url, "SELECT count(*) FROM snapshots") == [(1,)]
    lite = sqlite3.connect(sqlite_path)
    assert lite.execute("SELECT count(*) FROM tasks").fetchone() == (0,)
    assert lite.execute("SELECT count(*) FROM snapshots").fetchone() == (1,)


def test_a_task_outlives_the_snapshot_that_wrote_it(postgres_url):
    """--retain drops an old snapshot that a newer task still names: the reference is cleared, not violated."""
    now = time.time()
    fresh_task = [dict(event, timestamp=now, local_received=T0) for event in lifecycle("n1")]  # dated now, read in 2023
    assert cam(postgres_url, stdin=ndjson(fresh_task)).status == 0
    assert cam(postgres_url, "--retain", "1").status == 0
    assert query(postgres_url, "SELECT uuid, state, snapshot_id FROM tasks") == [("n1", "SUCCESS", None)]


def test_one_transaction_per_snapshot(postgres_url):
    """A shot the database refuses halfway (a task row) leaves no snapshot row behind: exit 73, in plain words."""
    assert cam(postgres_url, stdin=ndjson(lifecycle("ok1"))).status == 0
    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute("ALTER TABLE tasks ADD CONSTRAINT no_bad_tasks CHECK (name <> 'proj.bad')")
    result = cam(postgres_url, stdin=ndjson(lifecycle("ok2") + lifecycle("bad", name="proj.bad", start=T0 + 1)))
    assert result.status == 73 and result.stdout == b"", result
    assert result.stderr.startswith(f"cev-cam: error: cannot write {postgres_url}: ") and "no_bad_tasks" in \
        result.stderr and "Traceback" not in result.stderr
    assert query(postgres_url, "SELECT count(*) FROM snapshots") == [(1,)]
    assert query(postgres_url, "SELECT uuid FROM tasks") == [("ok1",)]


@pytest.mark.parametrize("url, status, reason", [
    ("postgresql://celops:hunter2@127.0.0.1:1/x", 69, "cannot reach database postgresql://celops:***@127.0.0.1:1/x"),
    (f"postgresql://postgres:hunter2@127.0.0.1:5432/no_such_db_{uuid.uuid4().hex[:6]}", 69,
     "does not exist"),
], ids=["refused", "no-database"])
def test_unreachable_database_without_the_password(url, status, reason):
    result = cam(url, stdin=ndjson(lifecycle("a1")))
    assert result.status == status and result.stdout == b"", result
    assert reason in result.stderr and "hunter2" not in result.stderr and "Traceback" not in result.stderr


def test_a_role_refused_the_tables_is_77(postgres_url):
    role = f"celops_ro_{uuid.uuid4().hex[:6]}"
    assert cam(postgres_url, stdin=ndjson(lifecycle("a1"))).status == 0
    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'hunter2'")
    try:
        result = cam(postgres_url.replace("postgres@", f"{role}:hunter2@"), stdin=ndjson(lifecycle("a2")))
        assert result.status == 77, result
        assert "permission denied" in result.stderr and "hunter2" not in result.stderr
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as db:
            db.execute(f"DROP OWNED BY {role}")
            db.execute(f"DROP ROLE {role}")


def test_no_password_in_the_process_list(postgres_url):
    """cev-cam runs for days: ps shows *** where its --database URL had a password."""
    url = postgres_url.replace("postgres@", "postgres:s3cret@")  # trust: any password is taken
    process = subprocess.Popen([os.path.join(BIN, "cev-cam"), "--sink", "sql", "--database", url, "--frequency",
                                "0.1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        process.stdin.write(ndjson(lifecycle("a1")))
        process.stdin.flush()
        wait_for(lambda: process.poll() is not None or query(postgres_url, "SELECT to_regclass('snapshots')")[0][0]
                 and query(postgres_url, "SELECT count(*) FROM snapshots")[0][0] > 0, 20, "cev-cam writing")
        assert process.poll() is None, process.stderr.read()
        with open(f"/proc/{process.pid}/cmdline", "rb") as cmdline:
            shown = cmdline.read().decode()
        assert "s3cret" not in shown and "postgres:***@" in shown, shown
    finally:
        process.kill()
        process.wait()


def test_missing_database_option_is_a_usage_error():
    result = run_command(cev_cam.main, ["--once", "--sink", "sql"], b"")
    assert result.status == 2 and "--sink sql needs --database PATH or a postgresql:// URL" in result.stderr


def test_the_readme_grafana_query_charts_the_history(postgres_url):
    """README's example for Grafana's PostgreSQL data source runs on the history, macro expanded as Grafana does."""
    import re

    from tests.support import ROOT

    with open(os.path.join(ROOT, "README.md")) as readme:
        (sql,) = re.findall(r"```sql\n(.*?)```", readme.read(), re.S)
    sql = sql.replace("$__unixEpochFilter(timestamp)", f"timestamp >= {int(T0) - 60} AND timestamp <= {int(T0) + 60}")
    assert cam(postgres_url, stdin=ndjson(lifecycle("a1") + lifecycle("b2", start=T0 + 1)[:2])).status == 0
    rows = query(postgres_url, sql)
    assert sorted((metric, value) for _, metric, value in rows) == [("STARTED", 1), ("SUCCESS", 1)]
    assert all(when.__class__.__name__ == "datetime" for when, _, _ in rows)


def test_a_connection_lost_while_running_ends_with_69(postgres_url):
    """The server drops cev-cam's session mid-run: exit 69 in one line, not a traceback from the shutter thread."""
    url = postgres_url.replace("postgres@", "postgres:s3cret@")
    process = subprocess.Popen([os.path.join(BIN, "cev-cam"), "--sink", "sql", "--database", url, "--frequency",
                                "0.1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        process.stdin.write(ndjson(lifecycle("a1")))
        process.stdin.flush()
        database = postgres_url.rpartition("/")[2]
        wait_for(lambda: process.poll() is not None or query(postgres_url, "SELECT to_regclass('snapshots')")[0][0]
                 and query(postgres_url, "SELECT count(*) FROM snapshots")[0][0] > 0, 20, "cev-cam writing")
        query(postgres_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
              "AND application_name = 'cev-cam'", database)
        assert process.wait(30) == 69
        stderr = process.stderr.read().decode()
        assert stderr.startswith("cev-cam: error: cannot reach database postgresql://postgres:***@"), stderr
        assert len(stderr.splitlines()) == 1 and "s3cret" not in stderr
    finally:
        process.kill()
        process.wait()
