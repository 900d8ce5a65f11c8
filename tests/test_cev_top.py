"""cev-top without a terminal: the model, the keys, the screen laid out on a text canvas, the replay clock."""

import os
import threading

import orjson
import pytest

from celops.commands import cev_cam
from celops.top.draw import TextCanvas, details_lines, draw, pane_heights, Frame
from celops.top.feeds import Pacer, RecordEvents
from celops.top.model import TaskFilter, TopModel
from celops.top.ui import Ui
from tests.conftest import run_bin, run_command
from tests.support import wait_for

NOW = 1_800_000_000.0


def event(kind, uuid="t1", offset=0.0, **fields):
    record = {"type": kind, "uuid": uuid, "hostname": "w1@h", "timestamp": NOW + offset,
              "local_received": NOW + offset, "clock": 1}
    record.update(fields)
    return record


def heartbeat(hostname="w1@h", offset=0.0):
    return {"type": "worker-heartbeat", "hostname": hostname, "timestamp": NOW + offset,
            "local_received": NOW + offset, "freq": 2.0, "active": 1, "processed": 7, "loadavg": [0.5, 0.2, 0.1],
            "sw_ver": "5.4.0"}


def failed_lifecycle(uuid="t1", name="proj.fail"):
    return [event("task-received", uuid, 0.0, name=name, args="(1,)", kwargs="{'x': 2}", retries=0),
            event("task-started", uuid, 0.1),
            event("task-failed", uuid, 0.2, exception="ValueError('boom')",
                  traceback='Traceback (most recent call last):\n  File "t.py"\nValueError: boom\n')]


def succeeded(uuid, name="proj.add", offset=0.0):
    return [event("task-received", uuid, offset, name=name, args="(2, 2)"),
            event("task-started", uuid, offset + 0.1),
            event("task-succeeded", uuid, offset + 0.2, result="4", runtime=0.1)]


class Recorder:
    """Stands in for feeds.Control in key tests: what would have been broadcast (the real one is in the tmux tests)."""

    def __init__(self):
        self.sent = []

    def send(self, what, command, arguments, destination=None, silent=False):
        self.sent.append((command, arguments, destination))


def screen(ui, height=24, width=80):
    canvas = TextCanvas(height, width)
    ui.refresh()
    draw(canvas, ui, Frame("redis://user:secret@host:6379/0", "live"))
    return canvas


# The model ------------------------------------------------------------------------


def test_the_model_keeps_what_state_leaves_out_for_the_details():
    model = TopModel()
    assert model.ingest([heartbeat(), *failed_lifecycle()]) == []
    record, fields, timeline = model.task_details("t1")
    assert record["state"] == "FAILURE" and record["name"] == "proj.fail"
    assert fields["args"] == "(1,)" and fields["kwargs"] == "{'x': 2}" and "ValueError: boom" in fields["traceback"]
    assert [kind for kind, _, _ in timeline] == ["task-received", "task-started", "task-failed"]
    assert model.totals == {"task-succeeded": 0, "task-failed": 1, "task-retried": 0}
    assert [(kind, name, uuid) for _, kind, name, uuid, _ in model.ticker] == [("task-failed", "proj.fail", "t1")]


def test_the_model_refuses_bad_events_as_state_does_and_counts_them():
    model = TopModel()
    problems = model.ingest([event("task-succeeded", runtime="fast"), {"type": ["not", "a", "string"]}])
    assert len(problems) == 1 and "runtime" in problems[0]
    assert model.state.invalid == 1 and "t1" not in model.details


def test_details_are_bounded_by_max_tasks():
    model = TopModel(max_tasks=3)
    for number in range(10):
        model.ingest(succeeded(f"t{number}"))
    assert sorted(model.details) == ["t7", "t8", "t9"] == sorted(model.state.tasks)


def test_queue_history_gives_a_trend_and_forgets_queues_that_went_away():
    model = TopModel()
    model.set_queues([{"type": "queue", "queue": "a", "messages": 1}, {"type": "queue", "queue": "b", "messages": 5}])
    model.set_queues([{"type": "queue", "queue": "a", "messages": 4}])
    view = model.view()
    assert [(row.name, row.history, row.trend) for row in view.queues] == [("a", [1, 4], 1)]


def test_a_filter_takes_state_names_and_parts_of_the_name():
    model = TopModel()
    model.ingest([*failed_lifecycle("f1", "proj.video.encode"), *succeeded("s1", "proj.video.thumb"),
                  *failed_lifecycle("f2", "proj.mail")])
    names = lambda text: sorted(row.uuid for row in model.view(TaskFilter(text)).tasks)  # noqa: E731
    assert names("failure") == ["f1", "f2"]
    assert names("FAILURE video") == ["f1"]
    assert names("video") == ["f1", "s1"]
    assert names("success failure mail") == ["f2"]


# Keys -----------------------------------------------------------------------------


def typed(ui, text):
    for key in text:
        ui.key(key)


def test_revoke_asks_first_and_only_y_sends():
    model = TopModel()
    model.ingest(failed_lifecycle())
    control = Recorder()
    ui = Ui(model, control=control)
    ui.refresh()
    ui.key("r")
    assert "revoke task t1 (proj.fail)?" in ui.status_line()
    ui.key("n")
    assert control.sent == [] and ui.status == "cancelled"
    ui.key("r")
    ui.key("y")
    assert control.sent == [("revoke", {"task_id": ["t1"], "terminate": False, "signal": None}, None)]
    ui.key("t")
    ui.key("y")
    assert control.sent[-1] == ("revoke", {"task_id": ["t1"], "terminate": True, "signal": "SIGTERM"}, None)


def test_worker_actions_go_to_the_selected_worker_only_after_a_yes():
    model = TopModel()
    model.ingest([heartbeat("w1@h"), heartbeat("w2@h")])
    control = Recorder()
    ui = Ui(model, control=control)
    ui.refresh()
    ui.key("\t")  # the workers pane
    ui.key("KEY_DOWN")
    ui.key("S")
    assert ui.status_line() == "shut down worker w2@h? [y/N]"
    ui.key("y")
    ui.key("a")
    typed(ui, "video")
    ui.key("\n")
    assert control.sent == [("shutdown", {}, ["w2@h"]),
                            ("add_consumer", {"queue": "video", "exchange": None, "exchange_type": None,
                                              "routing_key": None}, ["w2@h"])]


def test_a_rate_limit_is_checked_before_it_is_sent():
    model = TopModel()
    model.ingest(succeeded("s1"))
    control = Recorder()
    ui = Ui(model, control=control)
    ui.refresh()
    ui.key("l")
    typed(ui, "ten a minute")
    ui.key("\n")
    assert control.sent == [] and "not a rate" in ui.status
    ui.key("l")
    typed(ui, "10/m")
    ui.key("\n")
    assert control.sent == [("rate_limit", {"task_name": "proj.add", "rate_limit": "10/m"}, None)]


def test_without_a_broker_actions_say_why_not():
    model = TopModel()
    model.ingest(succeeded("s1"))
    ui = Ui(model, no_control_reason="replaying a file")
    ui.refresh()
    ui.key("r")
    assert ui.confirm is None and ui.status == "no actions: replaying a file"


def test_s_sorts_by_the_next_key_and_running_tasks_by_time_so_far():
    model = TopModel()
    model.ingest([*succeeded("quick", "b.quick", offset=-1.0),
                  event("task-received", "running", 1.0, name="a.long"), event("task-started", "running", 1.0),
                  *failed_lifecycle("failed", "c.fail"), heartbeat(offset=3.0)])
    ui = Ui(model)
    order = lambda: [row.uuid for row in ui.refresh().tasks]  # noqa: E731
    assert order() == ["running", "failed", "quick"]  # newest first
    ui.key("s")
    assert ui.sort_key == "state" and order() == ["failed", "running", "quick"]  # FAILURE < STARTED < SUCCESS
    ui.key("s")
    assert order() == ["running", "quick", "failed"]  # by name
    ui.key("s")
    ui.key("s")
    assert ui.sort_key == "runtime" and order()[0] == "running"  # 2 s so far, longer than quick's 0.1 s
    model.ingest(succeeded("new", "d.new", offset=5.0))
    assert "new" in order()  # a record arrived: sorted again


def test_the_selection_stays_on_its_task_when_new_ones_arrive():
    model = TopModel()
    model.ingest(succeeded("old", offset=0.0) + succeeded("new", offset=1.0))
    ui = Ui(model)
    ui.refresh()
    ui.key("KEY_DOWN")
    assert ui.current("tasks").uuid == "old"
    model.ingest(succeeded("newest", offset=2.0))
    ui.refresh()
    assert ui.current("tasks").uuid == "old"


def test_write_appends_the_task_record(tmp_path):
    model = TopModel()
    model.ingest(failed_lifecycle())
    ui = Ui(model)
    ui.refresh()
    path = tmp_path / "out.ndjson"
    for _ in range(2):
        ui.key("w")
        ui.prompt.text = str(path)
        ui.key("\n")
    records = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert len(records) == 2 and records[0]["type"] == "task" and records[0]["state"] == "FAILURE"
    ui.key("w")
    ui.prompt.text = str(tmp_path / "no" / "such" / "dir.ndjson")
    ui.key("\n")
    assert ui.status.startswith("cannot write")


# The screen -----------------------------------------------------------------------


def test_an_80x24_screen_shows_every_pane_and_hides_the_password():
    model = TopModel()
    model.ingest([heartbeat("w1@h"), *failed_lifecycle(), *succeeded("s1"),
                  {"type": "celops-gap", "reason": "restart", "since": NOW, "until": NOW + 1, "dropped": None}])
    model.set_queues([{"type": "queue", "queue": "celery", "messages": 3, "unacked": 1, "consumers": 2}])
    canvas = screen(Ui(model))
    text = canvas.text()
    lines = text.splitlines()
    assert len(lines) <= 24 and all(len(line) <= 80 for line in lines)
    task_styles = {line.split()[0]: canvas.styles[y] for y, line in enumerate(lines)
                   if line.startswith((" FAILURE", " SUCCESS"))}
    assert set(task_styles.values()) - {"selected"} <= {"bad", "good"}  # red or bold, green or plain
    assert task_styles["FAILURE"] in ("bad", "selected") and task_styles["SUCCESS"] in ("good", "selected")
    assert "secret" not in text and "redis://user:***@host:6379/0" in text
    assert "gaps 1" in lines[0] and "failed 1" in lines[1] and "succeeded 1" in lines[1]
    for heading in ("WORKERS", "QUEUES", "TASKS 2 of 2", "FAILURES AND RETRIES"):
        assert heading in text
    assert "w1@h" in text and "celery" in text and "proj.fail" in text and "ValueError('boom')" in text
    assert "GAP      events lost or maybe lost: restart" in text


def test_control_characters_from_a_worker_are_shown_escaped():
    model = TopModel()
    model.ingest([event("task-received", name="evil\x1b[2Jname"), event("task-failed", exception="E\x07")])
    text = screen(Ui(model)).text()
    assert "\x1b" not in text and "\x07" not in text and "evil\\x1b[2Jname" in text


def test_tiny_and_huge_screens_are_laid_out_without_overflow():
    model = TopModel()
    model.ingest([heartbeat(f"w{n}@h") for n in range(30)] + succeeded("s1"))
    for height, width in ((1, 1), (3, 10), (10, 30), (24, 80), (60, 200)):
        canvas = screen(Ui(model), height, width)
        assert len(canvas.text().splitlines()) <= height
    assert pane_heights(60, 30, 0, 0)[2] > pane_heights(24, 30, 0, 0)[2]  # a taller terminal: more tasks


def test_the_details_show_traceback_and_timeline():
    model = TopModel()
    model.ingest(failed_lifecycle())
    ui = Ui(model)
    ui.refresh()
    ui.key("\n")
    text = screen(ui).text()
    assert "TASK DETAILS" in text and "traceback:" in text and "ValueError: boom" in text
    assert "task-started" in text and "args       (1,)" in text
    assert details_lines(None, "gone")[0].startswith("task gone is no longer")


# Replay ---------------------------------------------------------------------------


def test_a_paused_replay_lets_one_event_through_per_step():
    model = TopModel()
    records = [heartbeat(offset=n * 1000.0) for n in range(5)]  # 1000 s apart: only steps move it on
    path_lines = [orjson.dumps(record) for record in records]
    pacer = Pacer(1.0)
    pacer.toggle_pause()
    feed = RecordEvents(model, _reader(path_lines), pacer).start()
    try:
        for expected in (1, 2, 3):
            pacer.step()
            wait_for(lambda: model.records == expected, 10, f"{expected} records")
        assert model.records == 3
    finally:
        feed.stop()


def test_a_replay_clock_runs_at_its_speed_and_stands_still_when_paused_or_over():
    model = TopModel()
    model.pace = Pacer(1000.0)
    model.ingest([heartbeat(offset=0.0)])
    assert model.now() > NOW  # a 4 s heartbeat window at x1000 passes in 4 ms: then offline
    wait_for(lambda: not model.view().workers[0].alive, 10, "the heartbeat expired at x1000")
    model.pace.toggle_pause()
    assert model.now() == NOW and model.view().workers[0].alive
    model.pace.toggle_pause()
    model.pace.ended = True
    assert model.now() == NOW


def _reader(lines):
    import io

    from celops.core.ndjson import Reader

    return Reader(["-"], io.BytesIO(b"\n".join(lines) + b"\n"), lambda message: None)


def test_a_replay_gives_the_counts_cev_cam_gives(tmp_path):
    """The same file through cev-top's feed and through cev-cam --once: the same counts."""
    path = tmp_path / "saved.ndjson"
    lines = [orjson.dumps(record) for record in
             [heartbeat(), *failed_lifecycle("f1"), *succeeded("s1"), *succeeded("s2", offset=1.0),
              {"type": "celops-gap", "reason": "x", "since": NOW, "until": NOW, "dropped": None},
              {"type": "error", "error": "bad", "size": 3, "local_received": NOW},
              event("task-succeeded", "bad", runtime=-1)]]
    path.write_bytes(b"\n".join(lines) + b"\nnot json\n")
    model = TopModel()
    reports = []
    from celops.core.ndjson import Reader

    feed = RecordEvents(model, Reader([str(path)], None, reports.append), Pacer(1e6))
    feed.run()
    snapshot = run_command(cev_cam.main, ["--once", str(path)]).records[-1]
    by_state = {}
    for task in model.state.tasks.values():
        by_state[task.state] = by_state.get(task.state, 0) + 1
    assert by_state == snapshot["tasks"]["by_state"]
    assert (model.state.event_count, model.state.gaps, model.state.errors, model.state.invalid) == \
           (snapshot["event_count"], snapshot["gaps"], snapshot["errors"], snapshot["invalid"])
    assert len(reports) == 2 and any("not JSON" in report for report in reports)


# Where it cannot draw -------------------------------------------------------------


@pytest.mark.parametrize("term", ["dumb", "", "no-such-terminal-type"])
def test_a_terminal_it_cannot_draw_on_is_one_line_and_exit_78(term):
    env = {"TERM": term}
    result = run_bin("cev-top", "--replay", os.devnull, env=env)
    assert result.status == 78
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("cev-top: error: ") and "Traceback" not in result.stderr


def test_standard_output_that_is_not_a_terminal_is_exit_78():
    result = run_bin("cev-top", "--replay", os.devnull, env={"TERM": "xterm-256color"})
    assert result.status == 78 and "standard output is not a terminal" in result.stderr


def test_speed_without_replay_is_a_usage_error():
    assert run_bin("cev-top", "--speed", "2", env={"TERM": "xterm-256color"}).status == 2


@pytest.mark.parametrize("option", [["-u"], ["--format", "ndjson"]])
def test_record_options_are_not_offered_a_command_that_draws_a_screen(option):
    """cev-top writes no records: its help (and so its man page and completions) has no -u or --format."""
    from celops.commands.cev_top import main

    assert "--format" not in run_command(main, ["--help"]).stdout.decode()
    result = run_bin("cev-top", "--replay", os.devnull, *option, env={"TERM": "xterm-256color"})
    assert result.status == 2 and "unrecognized arguments" in result.stderr


def test_model_ingest_is_safe_from_another_thread_while_views_are_taken():
    model = TopModel()
    done = threading.Event()

    def feed():
        for number in range(2000):
            model.ingest(succeeded(f"t{number}", offset=number * 0.001))
        done.set()

    threading.Thread(target=feed).start()
    while not done.is_set():
        model.view()
    assert model.view().header.task_count == 2000
