"""cev-cam: the State's rules against celery's, snapshots from real workers, sinks, timing, input."""

import os
import random
import signal
import sqlite3
import subprocess
import time

import orjson
import pytest

from celops.commands import cev_cam
from celops.commands.cev_dump import main as cev_dump_main
from celops.core.state import State
from tests.conftest import BIN, run_bin, run_command
from tests.support import ROOT, RecordStream, RedisServer, free_port, kombu_event_envelope, send_tasks, wait_for
from tests.test_cev_dump import publish, wait_subscribed

T0 = 1_700_000_000.0


def lifecycle(uuid, name="proj.add", hostname="w1@h", start=T0, outcome="succeeded", clock=0):
    """The events of one task, in order, as cev-dump writes them."""
    common = {"uuid": uuid, "hostname": hostname}
    events = [
        dict(common, type="task-received", name=name, args="(1,)", kwargs="{}", retries=0, timestamp=start),
        dict(common, type="task-started", pid=7, timestamp=start + 0.5),
        dict(common, type=f"task-{outcome}", timestamp=start + 1.5,
             **({"runtime": 1.0, "result": "2"} if outcome == "succeeded" else {"exception": "ValueError('x')"})),
    ]
    for offset, event in enumerate(events):
        event.update(clock=clock + offset, local_received=event["timestamp"] + 0.01)
    return events


def heartbeat(hostname, when, freq=2.0, active=0, processed=0):
    return {"type": "worker-heartbeat", "hostname": hostname, "timestamp": when, "local_received": when + 0.01,
            "freq": freq, "active": active, "processed": processed, "loadavg": [0.1, 0.1, 0.1],
            "sw_ver": "5.4.0", "sw_ident": "py-celery", "sw_sys": "Linux", "clock": 1}


def ndjson(records):
    return b"".join(orjson.dumps(record) + b"\n" for record in records)


def snapshots(result):
    return [record for record in result.records if record["type"] == "snapshot"]


# -- the State, against celery's ------------------------------------------------------------

def test_out_of_order_events_end_in_celerys_state():
    from celery.events.state import State as CeleryState

    rng = random.Random(7)
    events = []
    for number in range(300):
        outcome = rng.choice(["succeeded", "failed", "retried", "revoked"])
        task = lifecycle(f"id-{number}", name=f"proj.t{number % 5}", outcome=outcome, start=T0 + number)
        rng.shuffle(task)
        events += task
    ours, celerys = State(), CeleryState()
    for event in events:
        ours.event(dict(event))
        celerys.event(dict(event))
    for uuid, task in celerys.tasks.items():
        mine = ours.tasks[uuid]
        assert (mine.state, mine.name) == (task.state, task.name), uuid
        assert (mine.received, mine.started) == (task.received, task.started)


def test_task_table_and_worker_table_are_bounded_oldest_out():
    state = State(max_tasks=50, max_workers=3)
    for number in range(200):
        for event in lifecycle(f"id-{number}", hostname=f"w{number % 5}@h", start=T0 + number):
            state.event(event)
    assert len(state.tasks) == 50 and "id-199" in state.tasks and "id-149" not in state.tasks
    assert len(state.workers) == 3


def test_worker_alive_until_heartbeat_expires_then_offline_event():
    state = State()
    state.event(heartbeat("w1@h", T0, freq=2.0))
    worker = state.workers["w1@h"]
    assert worker.alive(T0 + 3.9) and not worker.alive(T0 + 4.1)  # celery: freq * 200%
    state.event(dict(heartbeat("w1@h", T0 + 1), type="worker-offline"))
    assert not worker.alive(T0 + 1.5)


# -- filter form: input handling ----------------------------------------------------------------

def test_bad_lines_are_reported_skipped_and_exit_65():
    good = lifecycle("a1") + [heartbeat("w1@h", T0 + 1)]
    stdin = (ndjson(good[:2]) + b"not json\n" + b"[1, 2]\n" + b'{"no": "type"}\n'
             + b'{"type": "who-knows"}\n' + b'{"type": "celops-gap", "reason": "restart", "since": 1, "until": 2,'
             b' "dropped": null}\n' + b'{"type": "error", "error": "bad base64", "size": 9}\n' + ndjson(good[2:]))
    result = run_command(cev_cam.main, ["--once"], stdin)
    assert result.status == 65
    assert "cev-cam: <stdin>:3: not JSON" in result.stderr
    assert "cev-cam: <stdin>:4: not a JSON object" in result.stderr
    (shot,) = snapshots(result)
    assert shot["tasks"]["by_state"] == {"SUCCESS": 1}
    assert (shot["gaps"], shot["errors"], shot["ignored"], shot["event_count"]) == (1, 1, 2, 4)
    strict = run_command(cev_cam.main, ["--once", "--strict"], stdin)
    assert strict.status == 65 and strict.records == []


# The triggers: each crashed cev-cam at the next snapshot, with one sink or another.
# (the field at fault, the event)
WRONG_TYPED = [
    ("timestamp", {"type": "task-started", "uuid": "u1", "hostname": "hnew", "timestamp": "abc"}),
    ("freq", {"type": "worker-heartbeat", "hostname": "w2@h", "freq": "abc", "timestamp": T0, "local_received": T0}),
    ("name", {"type": "task-received", "uuid": "u2", "name": {}, "timestamp": T0}),
    ("hostname", {"type": "task-started", "uuid": "u3", "hostname": [], "timestamp": T0}),
    ("retries", {"type": "task-received", "uuid": "u4", "retries": 18446744073709551615, "hostname": "w1@h",
                 "timestamp": T0}),
    ("hostname", {"type": "task-started", "uuid": "u5", "hostname": 5, "timestamp": T0}),
    ("freq", {"type": "worker-heartbeat", "hostname": "w3@h", "freq": 1e308, "timestamp": T0, "local_received": T0}),
]


@pytest.mark.parametrize("sink", ["ndjson", "sqlite", "prom"])
def test_wrong_typed_events_are_reported_by_line_and_never_stored(tmp_path, sink):
    good = [event for number in range(100) for event in lifecycle(f"id-{number}", start=T0 + number)]
    sink_args = {"ndjson": [], "sqlite": ["--database", str(tmp_path / "cam.db")],
                 "prom": ["--textfile", str(tmp_path / "cam.prom")]}[sink]
    result = run_command(cev_cam.main, ["--once", "--tasks", "--sink", sink, *sink_args],
                         ndjson(good + [event for _, event in WRONG_TYPED] + [heartbeat("w1@h", T0 + 100)]))
    assert result.status == 65, result
    reported = result.stderr.splitlines()
    assert len(reported) == len(WRONG_TYPED)
    for line_number, line, (field, event) in zip(range(301, 400), reported, WRONG_TYPED):
        assert line.startswith(f"cev-cam: <stdin>:{line_number}: {event['type']} event: {field} must be "), line
    if sink == "ndjson":
        shot = snapshots(result)[0]
        assert (shot["event_count"], shot["invalid"], shot["tasks"]["count"]) == (301, 7, 100)
        assert [worker["hostname"] for worker in shot["workers"]] == ["w1@h"]
        assert {record["uuid"] for record in result.records if record["type"] == "task"} == {
            f"id-{number}" for number in range(100)}
    elif sink == "sqlite":
        with sqlite3.connect(tmp_path / "cam.db") as db:
            assert db.execute("SELECT count(*), max(retries) FROM tasks").fetchone() == (100, 0)
    else:
        assert "celops_events_invalid_total 7.0" in (tmp_path / "cam.prom").read_text()


@pytest.mark.parametrize("main, option", [
    (cev_cam.main, option) for option in ("--frequency", "--duration", "--buffer", "--retain", "--ttl", "--expires",
                                          "-t", "--max-tasks", "--max-workers", "--maxrate")] + [
    (cev_dump_main, option) for option in ("--duration", "--idle", "--limit", "--buffer", "-t")])
@pytest.mark.parametrize("value", ["nan", "inf", "1e308", "0", "-1", "9" * 400 + "/s"])
def test_every_number_option_refuses_meaningless_values(main, option, value):
    if value.endswith("/s") and option != "--maxrate":
        value = "9" * 400
    context = ["--once"] if main is cev_cam.main else ["-b", f"redis://127.0.0.1:{free_port()}/0"]
    result = run_command(main, [option, value, *context])  # were the value taken: a snapshot or exit 69
    assert result.status == 2 and result.stdout == b"", result
    assert value in result.stderr


def test_snapshot_fields_and_task_records_for_cctl():
    events = lifecycle("a1", name="proj.add") + lifecycle("b2", name="proj.fail", outcome="failed", start=T0 + 2)
    events += lifecycle("c3", name="proj.add", start=T0 + 3)[:2] + [heartbeat("w1@h", T0 + 4, active=1)]
    result = run_command(cev_cam.main, ["--once", "--tasks"], ndjson(events))
    assert result.status == 0, result
    tasks = [record for record in result.records if record["type"] == "task"]
    assert {(task["uuid"], task["state"], task["hostname"]) for task in tasks} == {
        ("a1", "SUCCESS", "w1@h"), ("b2", "FAILURE", "w1@h"), ("c3", "STARTED", "w1@h")}
    (shot,) = snapshots(result)
    assert shot["timestamp"] == pytest.approx(T0 + 4.01, abs=1)  # the stream's clock, not now
    assert shot["tasks"]["by_name"] == {"proj.add": {"SUCCESS": 1, "STARTED": 1}, "proj.fail": {"FAILURE": 1}}
    assert shot["tasks"]["runtime"]["proj.add"] == {"count": 1, "p50": 1.0, "p95": 1.0, "max": 1.0}
    assert shot["wait"]["proj.add"]["count"] == 2 and shot["wait"]["proj.add"]["max"] == 0.5
    (worker,) = shot["workers"]
    assert worker["hostname"] == "w1@h" and worker["alive"] and worker["active"] == 1 and worker["freq"] == 2.0


def test_clear_after_forgets_tasks_between_shots():
    process = feeder(["--frequency", "0.1", "--clear-after"])
    shots = RecordStream(process)
    process.stdin.write(ndjson(lifecycle("a1")))
    process.stdin.flush()
    shots.until(lambda shot: shot["tasks"]["count"] == 1, 20)
    shots.until(lambda shot: shot["tasks"]["count"] == 0 and shot["event_count"] == 3, 20)
    process.stdin.close()
    assert process.wait(10) == 0


# -- sinks -------------------------------------------------------------------------------------

def test_prom_textfile_parses_with_prometheus_client(tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    events = [heartbeat("w1@h", T0)] + lifecycle("a1") + lifecycle("b2", outcome="failed", start=T0 + 1)
    path = tmp_path / "celery.prom"
    result = run_command(cev_cam.main, ["--once", "--sink", "prom", "--textfile", str(path)], ndjson(events))
    assert result.status == 0 and result.stdout == b""
    samples = {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
               for family in text_string_to_metric_families(path.read_text()) for sample in family.samples}
    assert samples[("celery_worker_up", (("hostname", "w1@h"),))] == 1
    assert samples[("celery_task_succeeded_total", (("hostname", "w1@h"), ("name", "proj.add")))] == 1
    assert samples[("celery_task_failed_total", (("hostname", "w1@h"), ("name", "proj.add")))] == 1
    assert samples[("celery_task_runtime_count", (("hostname", "w1@h"), ("name", "proj.add")))] == 1
    assert samples[("celery_task_runtime_sum", (("hostname", "w1@h"), ("name", "proj.add")))] == 1.0
    assert samples[("celery_tasks", (("name", "proj.add"), ("state", "FAILURE")))] == 1
    assert samples[("celops_events_total", ())] == 7
    assert not os.path.exists(f"{path}.tmp")


def test_sqlite_sink_holds_rows_and_prunes(tmp_path):
    database = tmp_path / "cam.db"
    sent_only = {"type": "task-sent", "uuid": "c3", "name": "proj.add", "hostname": "client@h",
                 "timestamp": T0, "clock": 0, "local_received": T0}  # no worker got it: no task timestamp
    events = lifecycle("a1") + lifecycle("b2", start=T0 + 1)[:2] + [sent_only]
    args = ["--once", "--sink", "sqlite", "--database", str(database)]
    assert run_command(cev_cam.main, args, ndjson(events)).status == 0
    assert run_command(cev_cam.main, args, ndjson(lifecycle("b2", start=T0 + 1)[2:])).status == 0
    db = sqlite3.connect(database)
    assert db.execute("SELECT uuid, state FROM tasks ORDER BY uuid").fetchall() == [
        ("a1", "SUCCESS"), ("b2", "SUCCESS"), ("c3", "PENDING")]
    (count, record), _ = db.execute("SELECT event_count, record FROM snapshots ORDER BY id").fetchall()
    assert count == 6 and orjson.loads(record)["tasks"]["by_state"] == {"SUCCESS": 1, "STARTED": 1, "PENDING": 1}
    db.close()
    assert run_command(cev_cam.main, args + ["--retain", "1"], b"").status == 0  # rows from 2023: pruned
    db = sqlite3.connect(database)
    assert db.execute("SELECT count(*) FROM tasks").fetchone() == (0,)


def feeder(args):
    """cev-cam in a subprocess whose stdin stays open: a pipe fed by the test."""
    return subprocess.Popen([os.path.join(BIN, "cev-cam"), *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_killed_sqlite_writer_leaves_a_readable_database(tmp_path):
    database = tmp_path / "cam.db"
    process = feeder(["--sink", "sqlite", "--database", str(database), "--frequency", "0.02"])
    number = 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        process.stdin.write(ndjson(lifecycle(f"id-{number}", start=T0 + number)))
        process.stdin.flush()
        number += 1
        if number % 200 == 0 and database.exists():
            check = sqlite3.connect(database)
            try:
                if check.execute("SELECT count(*) FROM snapshots").fetchone()[0] >= 20:
                    break
            except sqlite3.OperationalError:
                pass  # the schema is not there yet
            finally:
                check.close()
    process.kill()
    process.wait()
    db = sqlite3.connect(database)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert db.execute("SELECT count(*) FROM snapshots").fetchone()[0] >= 20
    assert db.execute("SELECT count(*) FROM tasks WHERE state = 'SUCCESS'").fetchone()[0] > 0


def test_maxrate_limits_shots_and_sigterm_flushes_a_last_one():
    def shots(extra):
        process = feeder(["--frequency", "0.05", *extra])
        process.stdin.write(ndjson(lifecycle("a1")))
        process.stdin.flush()
        time.sleep(1.5)  # the thing under test is a rate over wall time
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=10)
        assert process.returncode == 0 and err == b""
        return out.count(b'"type":"snapshot"')

    unlimited, limited = shots([]), shots(["--maxrate", "2/s"])
    assert unlimited >= 10
    assert 2 <= limited <= 6  # one token at start, 2/s after, and the last shot at SIGTERM


def test_ctrl_c_exits_130_quietly():
    process = feeder(["--frequency", "0.1"])
    shots = RecordStream(process)
    process.stdin.write(ndjson(lifecycle("a1")))
    process.stdin.flush()
    shots.until(lambda shot: shot["event_count"] == 3, 20)  # running, handlers in place
    process.send_signal(signal.SIGINT)
    assert process.wait(10) == 130
    assert process.stderr.read() == b""


# -- third-party cameras -----------------------------------------------------------------------

DUMPCAM = '''
from pprint import pformat

from celery.events.snapshot import Polaroid


class DumpCam(Polaroid):
    clear_after = True  # clear after flush (incl, state.event_count).

    def on_shutter(self, state):
        if not state.event_count:
            # No new events since last snapshot.
            return
        print('Workers: {0}'.format(pformat(state.workers, indent=4)))
        print('Tasks: {0}'.format(pformat(state.tasks, indent=4)))
        print('Total: {0.event_count} events, {0.task_count} tasks'.format(
            state))
'''


def test_dumpcam_from_the_monitoring_guide_runs(tmp_path):
    (tmp_path / "myapp.py").write_text(DUMPCAM)
    events = [heartbeat("w1@h", T0)] + lifecycle("a1") + lifecycle("b2", outcome="failed", start=T0 + 1)
    saved = tmp_path / "saved.ndjson"
    saved.write_bytes(ndjson(events))
    result = run_bin("cev-cam", "--once", "--camera", "myapp.DumpCam", str(saved),
                     env={"PYTHONPATH": f"{tmp_path}:{ROOT}"})
    assert result.status == 0, result
    assert b"Total: 7 events, 2 tasks" in result.stdout
    assert b"<Task: proj.add(a1) SUCCESS" in result.stdout and b"<Worker: w1@h" in result.stdout
    not_a_camera = run_bin("cev-cam", "--once", "--camera", "os.path", str(saved))
    assert not_a_camera.status == 2 and "not a celery.events.snapshot.Polaroid subclass" in not_a_camera.stderr


# -- real workers ------------------------------------------------------------------------------

def test_live_counts_offline_worker_and_replay(broker_url, start_worker, tmp_path):
    worker = start_worker(broker_url)
    env = dict(os.environ, PYTHONPATH=ROOT)
    live = subprocess.Popen([os.path.join(BIN, "cev-cam"), "--live", "-b", broker_url, "--frequency", "0.3",
                             "--wakeup"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    saved = tmp_path / "saved.ndjson"
    with open(saved, "wb") as out:
        dump = subprocess.Popen([os.path.join(BIN, "cev-dump"), "-b", broker_url, "--wakeup"],
                                stdout=out, stderr=subprocess.PIPE, env=env)
    try:
        shots = RecordStream(live)

        def worker_state(shot):
            return {w["hostname"]: w["alive"] for w in shot["workers"]}.get(worker.hostname)

        shots.until(lambda shot: worker_state(shot), 30)
        wait_for(lambda: worker.hostname.encode() in saved.read_bytes(), 30, "a worker event in cev-dump's file")
        send_tasks(broker_url, "celery", "tests.app.add", (2, 2), 5)
        send_tasks(broker_url, "celery", "tests.app.fail", ("boom",), 3)
        send_tasks(broker_url, "celery", "tests.app.sleep", (0.2,))
        expected = {"SUCCESS": 6, "FAILURE": 3}
        shot = shots.until(lambda shot: shot["tasks"]["by_state"] == expected, 60)
        assert shot["tasks"]["by_name"] == {"tests.app.add": {"SUCCESS": 5}, "tests.app.fail": {"FAILURE": 3},
                                            "tests.app.sleep": {"SUCCESS": 1}}
        assert shot["tasks"]["runtime"]["tests.app.sleep"]["max"] >= 0.2
        assert shot["wait"]["tests.app.add"]["count"] == 5

        dump.send_signal(signal.SIGTERM)
        dump.wait(10)
        replay = run_command(cev_cam.main, ["--once", str(saved)])
        assert replay.status == 0, replay
        (final,) = snapshots(replay)
        assert final["tasks"] == shot["tasks"]
        assert final["wait"] == shot["wait"]
        assert worker.hostname in {w["hostname"] for w in final["workers"] if w["alive"]}

        worker.kill(signal.SIGKILL)
        killed_at = time.monotonic()
        shots.until(lambda shot: worker_state(shot) is False, 30)
        assert time.monotonic() - killed_at >= 1.0  # not before its heartbeat could expire
        live.send_signal(signal.SIGTERM)
        live.wait(10)
        assert live.returncode == 0, live.stderr.read()
    finally:
        for process in (live, dump):
            if process.poll() is None:
                process.kill()
                process.wait()


def test_detached_camera_writes_its_pidfile_and_stops_on_sigterm(fresh_redis_url, tmp_path):
    pidfile, logfile, database = tmp_path / "cam.pid", tmp_path / "cam.log", tmp_path / "cam.db"
    result = run_bin("cev-cam", "--live", "-b", fresh_redis_url, "--detach", "--pidfile", str(pidfile),
                     "--logfile", str(logfile), "--sink", "sqlite", "--database", str(database),
                     "--frequency", "0.1")
    assert result.status == 0 and result.stdout == b""
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 30, "the pidfile")
    pid = int(pidfile.read_text())

    def shots():
        try:
            with sqlite3.connect(database) as db:
                return db.execute("SELECT count(*) FROM snapshots").fetchone()[0]
        except sqlite3.OperationalError:
            return 0

    wait_for(lambda: shots() >= 2, 30, f"two snapshots (log: {logfile})")
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not pidfile.exists(), 30, "the detached camera's stop")


def test_live_bad_events_are_warned_and_snapshot_time_never_goes_back_across_a_restart(tmp_path):
    server = RedisServer(str(tmp_path)).start()
    camera = subprocess.Popen([os.path.join(BIN, "cev-cam"), "--live", "-b", server.url(0), "--frequency", "0.1"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        shots = RecordStream(camera)
        wait_subscribed(server)
        for event in [event for _, event in WRONG_TYPED[:2]] + [heartbeat("w1@h", time.time())]:
            publish(server, kombu_event_envelope(event))
        shots.until(lambda shot: shot["invalid"] == 2 and shot["event_count"] == 1)
        server.process.kill()
        server.process.wait()
        down = len(shots.records)
        shots.until(lambda shot: len(shots.records) >= down + 3)  # shots taken while the broker is away
        server.start()  # the same port
        shots.until(lambda shot: shot["gaps"] == 1)
        after_gap = len(shots.records)
        shots.until(lambda shot: len(shots.records) >= after_gap + 3)
        camera.send_signal(signal.SIGTERM)
        assert shots.finish() == 0
    finally:
        if camera.poll() is None:
            camera.kill()
            camera.wait()
        server.stop()
    times = [shot["timestamp"] for shot in shots.records]
    assert times == sorted(times)
    warnings = shots.stderr().splitlines()
    assert warnings == ["cev-cam: bad event from the broker, not applied: task-started event: timestamp must be "
                        "epoch seconds from 0 to 1e+11, not 'abc'",
                        "cev-cam: bad event from the broker, not applied: worker-heartbeat event: freq must be "
                        "seconds above 0 and at most 3600, not 'abc'"]


def test_detach_with_a_dead_broker_exits_69_in_the_foreground(tmp_path):
    pidfile, logfile = tmp_path / "cam.pid", tmp_path / "cam.log"
    result = run_bin("cev-cam", "--live", "-b", f"redis://127.0.0.1:{free_port()}/0", "-t", "1", "--detach",
                     "--pidfile", str(pidfile), "--logfile", str(logfile), "--sink", "sqlite",
                     "--database", str(tmp_path / "cam.db"))
    assert result.status == 69, result
    assert result.stderr.startswith("cev-cam: error: cannot reach broker") and result.stderr.count("\n") == 1
    assert not pidfile.exists()
