"""cev-top on a real terminal: tmux, keys sent, what is drawn captured; real workers on a private Redis.

Every wait polls capture-pane; nothing sleeps a fixed time.
"""

import os
import re
import shlex
import subprocess
import uuid

import orjson
import pytest

from tests.conftest import BIN, run_bin
from tests.support import ROOT, poll, send_tasks

pytestmark = pytest.mark.skipif(subprocess.run(["which", "tmux"], capture_output=True).returncode != 0,
                                reason="tmux is not installed (scripts/ensure-brokers.sh installs it)")


class Tmux:
    """A tmux server of its own running one shell command in a window of ``width`` x ``height``."""

    def __init__(self, command, width=100, height=30, env=None):
        self.socket = f"celops-top-{uuid.uuid4().hex[:8]}"
        environment = " ".join(f"{name}={shlex.quote(value)}" for name, value in
                               {"TERM": "xterm-256color", "LANG": "C.UTF-8", **(env or {})}.items())
        # the shell stays after cev-top, so its exit status and the terminal it leaves can be read;
        # its trap keeps it alive through a Ctrl-C meant for cev-top (which gets the default handler back)
        script = (f"trap true INT; cd {shlex.quote(ROOT)} && env {environment} {command}; "
                  "echo cev-top-exited-$?; exec sh")
        self.tmux("new-session", "-d", "-x", str(width), "-y", str(height), "sh", "-c", script)

    def tmux(self, *args):
        return subprocess.run(["tmux", "-L", self.socket, "-f", os.devnull, *args], capture_output=True,
                              text=True, timeout=30)

    def screen(self):
        return self.tmux("capture-pane", "-p").stdout

    def keys(self, *keys):
        self.tmux("send-keys", *keys)

    def type(self, text):
        self.tmux("send-keys", "-l", text)

    def wait(self, accept, what, timeout=60):
        """The screen once ``accept(screen)`` is true (a string: once it is on the screen)."""
        check = (lambda screen: accept in screen) if isinstance(accept, str) else accept
        return poll(self.screen, check, timeout, what)

    def close(self):
        self.tmux("kill-server")


@pytest.fixture
def tmux_session():
    sessions = []

    def start(command, **options):
        session = Tmux(command, **options)
        sessions.append(session)
        return session

    yield start
    for session in sessions:
        session.close()


def test_live_tasks_traceback_filter_and_revoke_against_a_real_worker(fresh_redis_url, start_worker, tmux_session):
    worker = start_worker(fresh_redis_url)
    top = tmux_session(f"{BIN}/cev-top -b {fresh_redis_url} --enable-events --queue-interval 1", width=160)
    top.wait(worker.hostname, "the worker on the screen")
    top.wait(lambda screen: "celery" in screen.split("QUEUES")[1].split("TASKS")[0], "the celery queue measured")

    # a running task appears
    (running,) = send_tasks(fresh_redis_url, "celery", "tests.app.sleep", [60])
    top.wait(lambda screen: "STARTED" in screen and "tests.app.sleep" in screen, "the running task")

    # a failed task's traceback opens
    send_tasks(fresh_redis_url, "celery", "tests.app.fail", ["kaboom"])
    top.wait("ValueError('kaboom')", "the failure in the ticker")
    top.keys("/")
    top.type("failure")
    top.keys("Enter")
    top.wait(lambda screen: "filter failure" in screen and "tests.app.sleep" not in screen.split("TASKS")[1]
             .split("FAILURES")[0], "only failures listed")
    top.keys("Enter")
    top.wait(lambda screen: "traceback:" in screen and "exception  ValueError('kaboom')" in screen, "the details")
    top.keys("G")
    top.wait(lambda screen: "ValueError: kaboom" in screen and "task-failed" in screen, "the traceback's end")
    top.keys("Escape")

    # revoke from the keyboard really revokes
    top.keys("/")
    for _ in range(len("failure")):  # the prompt starts with the filter in force
        top.keys("BSpace")
    top.type("started")
    top.keys("Enter")
    top.wait(lambda screen: "filter started" in screen and running in screen, "the running task alone")
    top.keys("r")
    top.wait(f"revoke task {running}", "the confirmation")
    top.keys("y")
    top.wait(f"revoke {running}: {worker.hostname}: ", "the reply")
    revoked = poll(lambda: run_bin("cctl", "-b", fresh_redis_url, "revoked", "--each", "--format", "ndjson"),
                   lambda result: any(record.get("uuid") == running for record in result.records), 30,
                   "the task in the worker's revoked list")
    assert revoked.status == 0
    top.keys("q")
    top.wait("cev-top-exited-0", "cev-top's exit")


@pytest.fixture
def saved_stream(tmp_path):
    """A saved stream of 300 task lifecycles (a tenth of them failed) and heartbeats, as cev-dump writes it."""
    import sys

    sys.path.insert(0, ROOT)
    from bench.bench_cev_cam import write_stream

    path = tmp_path / "saved.ndjson"
    write_stream(str(path), 900)
    return path


def test_replay_ends_with_the_counts_of_cev_cam_once(saved_stream, tmux_session):
    snapshot = run_bin("cev-cam", "--once", str(saved_stream)).records[-1]
    top = tmux_session(f"{BIN}/cev-top --replay {saved_stream} --speed 100000", width=120,
                       env={"COLUMNS": "80", "LINES": "24"})  # exported by some shell: not the terminal's size
    screen = top.wait("input ended", "the end of the replay")
    assert " VERSION" in screen and len(screen.splitlines()) == 30  # the heading of the 84th column: 120 wide
    by_state = snapshot["tasks"]["by_state"]
    assert f"events {snapshot['event_count']} " in screen
    assert f"succeeded {by_state['SUCCESS']} " in screen and f"failed {by_state['FAILURE']} " in screen
    assert f"TASKS {snapshot['tasks']['count']} of {snapshot['tasks']['count']}" in screen
    top.keys("q")
    top.wait("cev-top-exited-0", "cev-top's exit")


def test_resize_redraws_to_the_new_size(saved_stream, tmux_session):
    top = tmux_session(f"{BIN}/cev-top --replay {saved_stream} --speed 100000", width=100, height=30)
    top.wait("input ended", "the replay drawn")
    top.tmux("resize-window", "-x", "60", "-y", "20")
    screen = top.wait(lambda screen: screen.splitlines()[0].endswith("…") and "FAILURES AND RETRIES" in screen,
                      "the screen drawn again in 60 columns")
    assert all(len(line) <= 60 for line in screen.splitlines()) and len(screen.splitlines()) <= 20
    top.tmux("resize-window", "-x", "160", "-y", "50")
    screen = top.wait(lambda screen: "workers 20 up" in screen.splitlines()[0] or "workers 0 up" in screen,
                      "the header whole again")
    assert len(screen.splitlines()) > 30


@pytest.fixture
def replaying(saved_stream, tmux_session):
    """cev-top replaying the saved stream at its own pace, its screen drawn."""
    top = tmux_session(f"{BIN}/cev-top --replay {saved_stream}")
    top.wait("WORKERS", "the screen drawn")
    return top


def assert_terminal_restored(top):
    top.type("stty -a | tr ' ' '\\n' | grep -x -e echo -e icanon -e -echo -e -icanon | sort | tr '\\n' ,")
    top.keys("Enter")
    screen = top.wait("echo,icanon,", "the terminal modes back")
    assert "WORKERS" not in screen  # the screen cev-top drew is gone with it


def test_q_restores_the_terminal(replaying):
    replaying.keys("q")
    replaying.wait("cev-top-exited-0", "cev-top's exit")
    assert_terminal_restored(replaying)


def test_sigterm_restores_the_terminal_and_exits_0(replaying):
    import psutil

    shell = psutil.Process(int(replaying.tmux("display", "-p", "#{pane_pid}").stdout))
    (top,) = [process for process in shell.children(recursive=True) if "cev-top" in " ".join(process.cmdline())]
    top.terminate()
    replaying.wait("cev-top-exited-0", "cev-top's exit")
    assert_terminal_restored(replaying)


def test_ctrl_c_restores_the_terminal_and_exits_130(replaying):
    replaying.keys("C-c")
    replaying.wait("cev-top-exited-130", "cev-top's exit")


def test_piped_events_with_keys_from_the_terminal(saved_stream, tmux_session):
    """cev-dump ... | cev-top: the records from the pipe, the keys from /dev/tty; bad lines listed on exit."""
    bad = saved_stream.parent / "with-bad.ndjson"
    bad.write_bytes(saved_stream.read_bytes() + b"not json\n")
    top = tmux_session(f"cat {bad} | {BIN}/cev-top")
    top.wait("stdin, input ended", "the stream read")
    top.keys("?")
    top.wait("HELP (Esc closes)", "the help, from keys on the terminal")
    top.keys("Escape")
    top.keys("q")
    screen = top.wait("cev-top-exited-65", "cev-top's exit")
    assert "cev-top: <stdin>:" in screen and "not JSON" in screen


def test_monochrome_terminal_in_a_c_locale_still_draws(saved_stream, tmux_session):
    top = tmux_session(f"{BIN}/cev-top --replay {saved_stream} --speed 100000",
                       env={"TERM": "vt100", "NO_COLOR": "1", "LC_ALL": "C"})
    screen = top.wait("input ended", "the screen drawn without colours")
    assert "TASKS 286 of 286" in screen and "~" in screen  # lines cut with ~: no … in ASCII
    top.keys("q")
    top.wait("cev-top-exited-0", "cev-top's exit")


def test_written_record_is_a_task_record(saved_stream, tmux_session, tmp_path):
    out = tmp_path / "picked.ndjson"
    top = tmux_session(f"{BIN}/cev-top --replay {saved_stream} --speed 100000")
    top.wait("input ended", "the replay drawn")
    top.keys("w")
    top.wait("append the task record to file:", "the prompt")
    for _ in range(40):
        top.keys("BSpace")
    top.type(str(out))
    top.keys("Enter")
    top.wait("wrote task", "the record written")
    (record,) = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert record["type"] == "task" and record["uuid"]


def test_live_on_either_broker_workers_tasks_and_queues(broker_url, start_worker, tmux_session):
    """The same screen from Redis and RabbitMQ: cev-cam's events, cq-len's queue counts, the password hidden."""
    worker = start_worker(broker_url)
    top = tmux_session(f"{BIN}/cev-top -b {broker_url} --queue-interval 1", width=160)
    top.wait(worker.hostname, "the worker on the screen")
    send_tasks(broker_url, "celery", "tests.app.add", [2, 2])
    top.wait(lambda screen: "SUCCESS   tests.app.add" in screen, "the task done")
    screen = top.wait(lambda screen: re.search(r"\n celery +\d+ ", screen), "the celery queue measured")
    if broker_url.startswith("amqp"):
        assert re.search(r"\n celery +0 +\S+ +1 ", screen)  # one consumer: the worker
    assert ":guest@" not in screen
    top.keys("q")
    top.wait("cev-top-exited-0", "cev-top's exit")


def test_an_unreachable_broker_is_one_line_and_exit_69_before_the_screen(tmux_session):
    top = tmux_session(f"{BIN}/cev-top -b redis://:hunter2@127.0.0.1:1/0 -t 1")
    screen = top.wait("cev-top-exited-69", "cev-top's exit")
    assert "cev-top: error: cannot reach broker redis://:***@127.0.0.1:1/0" in screen
    assert "hunter2" not in screen and "Traceback" not in screen


def test_a_replay_file_that_cannot_be_read_is_exit_65_before_the_screen(tmux_session, tmp_path):
    top = tmux_session(f"{BIN}/cev-top --replay {tmp_path}/missing.ndjson", width=250)
    screen = top.wait("cev-top-exited-65", "cev-top's exit")
    assert f"cev-top: error: {tmp_path}/missing.ndjson: No such file or directory\n" in screen


def test_keys_come_from_the_terminal_when_standard_input_is_dev_null(saved_stream, tmux_session):
    """As under a scheduler: curses must not read /dev/null (it would spin), and q must still work."""
    top = tmux_session(f"{BIN}/cev-top --replay {saved_stream} --speed 100000 < /dev/null")
    top.wait("input ended", "the replay drawn")
    top.keys("q")
    top.wait("cev-top-exited-0", "cev-top's exit")


def test_replay_pauses_and_steps_from_the_keyboard(tmp_path, tmux_session):
    """Events 1000 s apart: at the recorded pace only the first shows; paused, each n shows one more."""
    path = tmp_path / "slow.ndjson"
    path.write_bytes(b"".join(orjson.dumps({"type": "worker-heartbeat", "hostname": f"w{n}@h", "freq": 2.0,
                                            "timestamp": 1.8e9 + n * 1000, "local_received": 1.8e9 + n * 1000})
                              + b"\n" for n in range(5)))
    top = tmux_session(f"{BIN}/cev-top --replay {path}")
    top.wait("events 1 ", "the first event")
    top.keys("Space")
    top.wait("x1 paused", "paused")
    for count in (2, 3):
        top.keys("n")
        top.wait(f"events {count} ", f"step to {count} events")
    top.keys("Space")
    top.wait("replaying", "going on")
    assert "events 3 " in top.screen()  # at the recorded pace, the next is 1000 s away
