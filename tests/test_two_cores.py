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


def test_lists_are_worked_in_a_helper_and_their_results_come_back_in_order():
    with TwoCores(_squares) as cores:
        small, big, bigger = list(range(MIN_ITEMS - 1)), list(range(1000)), list(range(5000, 7000))
        tickets = [cores.submit(items) for items in (small, big, bigger)]  # two in the helper's hands at once
        assert tickets[0] is None and None not in tickets[1:]
        for ticket, items in zip(tickets, (small, big, bigger)):
            results = cores.results(ticket, items)
            assert [(item, square) for item, square, _ in results] == [(item, item * item) for item in items]
            assert {pid for _, _, pid in results} == ({os.getpid()} if ticket is None else {cores.pid})
        pid = cores.pid
        assert pid != os.getpid()
    assert cores.pid is None and _reaped(pid)


def test_a_dead_helper_leaves_its_work_here_and_unread_results_are_dropped():
    with TwoCores(_squares) as cores:
        cores.submit(list(range(500)))  # never asked for: a later list's results must not be taken for its own
        items = list(range(1000, 1500))
        assert [item for item, _, _ in cores.results(cores.submit(items), items)] == items
        pid = cores.pid
        os.kill(pid, signal.SIGKILL)  # it runs no more code once kill returns
        results = cores.results(cores.submit(list(range(500))), list(range(500)))
        assert [item for item, _, _ in results] == list(range(500))
        assert {helper for _, _, helper in results} == {os.getpid()} and cores.pid is None
        assert cores.submit(list(range(500))) is None  # one helper per context: the rest is done here
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
