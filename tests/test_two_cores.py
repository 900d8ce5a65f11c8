"""The helper process that examines the tail of each chunk (celops.core.two_cores), and cq-move with it."""

import os
import signal
import subprocess

import orjson
import redis

from celops.core.two_cores import MIN_ITEMS, TwoCores
from tests.conftest import BIN, empty_db_url
from tests.queue_support import fill_copies
from tests.support import wait_for


def _squares(items):
    return [(item, item * item, os.getpid()) for item in items]


def test_the_tail_is_worked_in_a_helper_and_the_results_come_in_order():
    with TwoCores(_squares) as cores:
        for size in (MIN_ITEMS - 1, MIN_ITEMS, 1000):
            items = list(range(size))
            head, tail, tail_results = cores.split(items)
            results = cores.work(head) + tail_results()
            assert [(item, square) for item, square, _ in results] == [(item, item * item) for item in items]
            helpers = {pid for _, _, pid in results} - {os.getpid()}
            assert len(helpers) == (1 if size >= MIN_ITEMS else 0) and len(tail) == (size - len(head))
        pid = cores.pid
    assert cores.pid is None and _reaped(pid)


def test_a_dead_helper_leaves_its_work_here_and_unread_results_are_dropped():
    with TwoCores(_squares) as cores:
        cores.split(list(range(500)))  # results never read: the next split must not take them for its own
        head, tail, tail_results = cores.split(list(range(1000, 1500)))
        assert [item for item, _, _ in cores.work(head) + tail_results()] == list(range(1000, 1500))
        pid = cores.pid
        os.kill(pid, signal.SIGKILL)
        head, tail, tail_results = cores.split(list(range(500)))
        results = cores.work(head) + tail_results()
        assert [item for item, _, _ in results] == list(range(500))
        assert {helper for _, _, helper in results} == {os.getpid()} and cores.pid is None
        assert cores.split(list(range(500)))[1] == []  # one helper per context: the rest is done here
    assert _reaped(pid)


def _reaped(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_killing_the_helper_mid_move_moves_every_message_once(redis_server, unique):
    """Within one Redis: the helper only computes; killed, its work is done by cq-move itself."""
    url = empty_db_url(redis_server)
    ids = fill_copies(url, unique, 40_000, unique)
    client = redis.Redis.from_url(url)
    process = subprocess.Popen([os.path.join(BIN, "cq-move"), "-b", url, "-Q", unique, "--to", f"{unique}-to", "-f"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ,
                                                                                        PYTHONUNBUFFERED="1"))
    children = f"/proc/{process.pid}/task/{process.pid}/children"
    wait_for(lambda: open(children).read().split(), 30, "cq-move to start its helper")
    os.kill(int(open(children).read().split()[0]), signal.SIGKILL)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    records = [orjson.loads(line) for line in out.splitlines()]
    assert [record["id"] for record in records[:-1]] == ids and records[-1]["moved"] == len(ids)
    moved = [orjson.loads(raw)["headers"]["id"] for raw in reversed(client.lrange(f"{unique}-to", 0, -1))]
    assert moved == ids and client.llen(unique) == 0
