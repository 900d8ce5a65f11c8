"""The view for people: tables on a terminal (a real pty), NDJSON byte for byte everywhere else."""

import io
import os
import pty
import subprocess

import orjson
import pytest

from celops.core import render
from celops.core.ndjson import dumps
from celops.records import EVENT_COLUMNS, RECORDS
from tests.conftest import BIN, run_bin
from tests.queue_support import publish

ESC = b"\x1b"


def on_pty(*argv, columns=100, env=None):
    """Run bin/ARGV[0] with stdout and stderr on a real pseudo-terminal; returns (status, text with \\r\\n as \\n)."""
    main, sub = pty.openpty()
    environ = {name: value for name, value in os.environ.items() if name != "NO_COLOR"}
    environ.update(COLUMNS=str(columns), TERM="xterm", **(env or {}))
    process = subprocess.Popen([os.path.join(BIN, argv[0]), *argv[1:]], stdin=subprocess.DEVNULL, stdout=sub,
                               stderr=sub, env=environ)
    os.close(sub)
    chunks = []
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the other side closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main)
    status = process.wait(60)
    return status, b"".join(chunks).replace(b"\r\n", b"\n")


def table(records, width=None, colour=False, tsv=False, flush_every=None):
    """What TableWriter draws for ``records``; ``flush_every`` N records (a batch), else one batch."""
    stream = io.BytesIO()
    writer = render.TableWriter(stream, tsv=tsv, width=width, colour=colour)
    for index, record in enumerate(records, 1):
        writer.write(record)
        if flush_every and index % flush_every == 0:
            writer.flush()
    writer.flush()
    return stream.getvalue().decode()


QUEUES = [{"type": "queue", "queue": "celery", "messages": 12, "ready": 12, "unacked": 0, "consumers": None,
           "memory": None, "by_priority": {"0": 12, "3": 0}, "source": "redis"},
          {"type": "queue", "queue": "video", "messages": 3, "ready": 3, "unacked": 0, "consumers": None,
           "memory": None, "by_priority": {"0": 3, "3": 0}, "source": "redis"}]


def test_a_batch_is_aligned_on_its_longest_values_with_the_columns_its_first_record_has():
    assert table(QUEUES).splitlines() == [
        "QUEUE   MESSAGES  READY  UNACKED  CONSUMERS  MEMORY  SOURCE  DETAILS",
        "celery  12        12     0        -          -       redis   by_priority={0:12,3:0}",
        "video   3         3      0        -          -       redis   by_priority={0:3,3:0}",
    ]
    listed = table([{"type": "queue", "queue": "celery", "broker": "redis://:***@h:6379/0"}])
    assert listed.splitlines()[0].split() == ["QUEUE", "BROKER"]


def test_columns_never_narrow_within_a_stream_and_the_heading_comes_once():
    wide = {"type": "queue", "queue": "a-much-longer-queue-name", "messages": 1}
    narrow = {"type": "queue", "queue": "q", "messages": 2}
    lines = table([wide, narrow, narrow], flush_every=1).splitlines()
    assert [line.index("MESSAGES") if i == 0 else line.rindex(" ") + 1 for i, line in enumerate(lines)] == [26] * 4


def test_events_gaps_and_errors_share_one_line_each_under_one_heading():
    event = {"type": "task-failed", "hostname": "w1@h", "uuid": "u1", "timestamp": 0.0, "exception": "Boom()"}
    gap = {"type": "celops-gap", "reason": "connection lost", "since": 1.0, "until": 2.0, "dropped": None}
    error = {"type": "error", "error": "bad base64", "size": 3}
    lines = table([event, gap, error, event], flush_every=1).splitlines()
    assert len(lines) == 5 and lines[0].split()[:3] == ["TIMESTAMP", "TYPE", "HOSTNAME"]
    assert "exception=Boom()" in lines[1] and "reason=connection lost" in lines[2] and "error=bad base64" in lines[3]
    sent, succeeded = {"type": "task-sent", "hostname": "h"}, {"type": "task-succeeded", "hostname": "w1@host"}
    lines = table([sent, succeeded], width=200, flush_every=1).splitlines()  # a stream, one record at a time
    assert lines[1].index("h ") == lines[2].index("w1@host") == lines[0].index("HOSTNAME")


def test_a_new_record_type_gets_its_own_heading():
    snapshot = {"type": "snapshot", "timestamp": 0.0, "event_count": 3, "gaps": 0, "errors": 0, "ignored": 0}
    task = {"type": "task", "uuid": "u1", "state": "SUCCESS", "name": "add"}
    lines = table([task, snapshot, task]).splitlines()
    assert len(lines) == 6 and lines[0].split()[:2] == ["TIMESTAMP", "STATE"] and lines[4] == lines[0]
    assert lines[2].split()[:2] == ["TIMESTAMP", "EVENT_COUNT"] and lines[5].split()[:2] == ["-", "SUCCESS"]


def test_on_a_terminal_long_values_are_cut_at_the_declared_width_and_the_edge():
    record = {"type": "message", "uuid": "u" * 50, "task": "t" * 50, "priority": 0, "retries": 0, "eta": None,
              "size": 10, "args": ["x" * 300]}
    lines = table([record], width=80).splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert "u" * 35 + "…" in lines[1] and "x" * 300 not in lines[1]
    piped = table([record]).splitlines()  # off a terminal nothing is cut
    assert "u" * 50 in piped[1] and "x" * 300 in piped[1]


def test_control_characters_in_values_cannot_drive_the_terminal():
    cells = table([{"type": "task-failed", "hostname": "evil\x1b[2J", "exception": "line1\nline2\x9b"}])
    assert "\x1b" not in cells and "\x9b" not in cells and len(cells.splitlines()) == 2
    assert "evil\\x1b[2J" in cells and "line1\\nline2\\x9b" in cells


def test_colour_marks_failures_only_on_a_terminal():
    coloured = table([{"type": "task-failed"}, {"type": "task-succeeded"}], width=100, colour=True)
    assert "\x1b[31mtask-failed" in coloured and "\x1b[32mtask-succeeded" in coloured
    assert "\x1b" not in table([{"type": "task-failed"}])


def test_tsv_has_a_heading_line_and_cuts_nothing():
    assert table(QUEUES, tsv=True).splitlines() == [
        "queue\tmessages\tready\tunacked\tconsumers\tmemory\tsource\tdetails",
        "celery\t12\t12\t0\t-\t-\tredis\tby_priority={0:12,3:0}",
        "video\t3\t3\t0\t-\t-\tredis\tby_priority={0:3,3:0}",
    ]


def test_epoch_seconds_are_local_clock_times_as_the_vocabulary_says():
    assert render.text(0.0) == "0"
    assert render.text(1e308, epoch=True) == "1e+308"
    stamp = table([{"type": "task-started", "timestamp": 86400.25}]).splitlines()[1].split()[0]
    assert stamp.endswith(":00.250") and len(stamp) == 12


def test_every_record_type_declares_its_table():
    for kind, spec in RECORDS.items():
        assert spec["layout"] in ("fixed", "first record"), kind
        documented = {name for names in spec["fields"] for name in names.split(", ")}
        documented |= set(spec["fields"].get("...", "").replace(",", " ").split())  # "all other fields: a, b"
        shared = spec["columns"] is EVENT_COLUMNS and kind != "event"  # gaps and errors line up with events
        shown = set(spec.get("details", ())) | (set() if shared else set(spec["columns"]))
        assert shown <= documented, (kind, shown - documented)


def test_cev_dump_batches_render_line_by_line():
    stream = io.BytesIO()
    writer = render.TableWriter(stream)
    writer.write_encoded(dumps({"type": "task-sent", "uuid": "u1"}) + dumps({"type": "task-received", "uuid": "u1"}))
    writer.flush()
    assert len(stream.getvalue().splitlines()) == 3 and writer.count == 2


@pytest.fixture
def queues(fresh_redis_url, unique):
    publish(fresh_redis_url, [(unique, 0, (1, 1)), (unique, 9, (2, 2)), (unique + "-b", 0, (3, 3))])
    return fresh_redis_url, [unique, unique + "-b"]


def test_a_terminal_gets_a_table_and_a_pipe_the_same_ndjson_as_before(queues):
    url, names = queues
    status, shown = on_pty("cq-len", "-b", url, *names)
    assert status == 0
    lines = shown.decode().splitlines()
    assert lines[0].startswith("\x1b[1mQUEUE") and lines[1].split()[:4] == [names[0], "2", "2", "0"]
    piped = run_bin("cq-len", "-b", url, *names)
    assert ESC not in piped.stdout and piped.stdout == run_bin("cq-len", "-b", url, "--format", "ndjson", *names).stdout
    assert piped.stdout == b"".join(dumps(record) for record in piped.records)  # the NDJSON writer's own bytes
    assert piped.records[0] == {"type": "queue", "queue": names[0], "messages": 2, "ready": 2, "unacked": 0,
                                "consumers": None, "memory": None, "by_priority": {"0": 1, "3": 0, "6": 0, "9": 1},
                                "source": "redis"}


@pytest.mark.parametrize("command", ["cq-ls", "cq-peek", "cq-purge"])
def test_every_command_draws_its_records_on_a_terminal(queues, command):
    url, names = queues
    argv = {"cq-ls": [], "cq-peek": [names[0]], "cq-purge": ["-Q", names[0], "--dry-run"]}[command]
    status, shown = on_pty(command, "-b", url, *argv, columns=60, env={"NO_COLOR": "1"})
    text = shown.decode()
    assert status == 0 and "{" not in text.splitlines()[0] and ESC.decode() not in text
    assert all(len(line) <= 60 for line in text.splitlines())
    assert ("tests.app.add" if command == "cq-peek" else names[0]) in text
    assert orjson.loads(run_bin(command, "-b", url, *argv).stdout.splitlines()[0])["type"] in ("queue", "message")


def test_format_ndjson_on_a_terminal_and_format_tsv_in_a_pipe(queues):
    url, names = queues
    status, shown = on_pty("cq-len", "-b", url, "--format", "ndjson", names[1])
    assert status == 0 and orjson.loads(shown.splitlines()[0])["queue"] == names[1]
    piped = run_bin("cq-len", "-b", url, "--format", "tsv", names[1])
    assert piped.stdout.decode().splitlines()[1].split("\t")[:2] == [names[1], "1"]
    assert run_bin("cq-len", "-b", url, "--format", "prom", names[1]).stdout.startswith(b"# HELP")
