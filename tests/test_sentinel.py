"""Redis Sentinel for real: a master, a replica and three Sentinels started by the tests (sentinel_support).

Every command through the Sentinel URL; SENTINEL FAILOVER during cev-dump and
cq-len --watch (the stream goes on on the new master, with a gap record or the
documented warning); cctl ping right after; the bad setups (wrong master
name, every Sentinel down, a Sentinel with a password) in one clear line.
"""

import os
import signal
import subprocess
import time

import pytest

from tests.conftest import BIN, run_bin
from tests.sentinel_support import MASTER_NAME, SentinelCluster, command
from tests.support import RecordStream, free_port, kombu_event_envelope, send_tasks, wait_for

SECRET = "s3ntinel-Secret"
MASTER_SECRET = "m4ster-Secret"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = SentinelCluster(str(tmp_path_factory.mktemp("sentinel"))).start()
    yield cluster
    cluster.stop()


def sentinel_url(cluster, db=0):
    return f"{cluster.url(db=db)}?master_name={MASTER_NAME}"


@pytest.fixture
def sentinel_worker(cluster, start_worker):
    """A worker on the Sentinel URL, as celery's users configure it (transport option master_name)."""
    return start_worker(cluster.url(), transport_options=cluster.transport_options())


def spawn(*args):
    return subprocess.Popen([os.path.join(BIN, args[0]), *args[1:]], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def test_every_queue_command_works_through_the_sentinel_url(cluster, unique):
    url = sentinel_url(cluster, db=3)
    send_tasks(cluster.url(db=3), unique, "tests.app.add", (1, 2), count=3,
               transport_options=cluster.transport_options())
    assert unique in [r["queue"] for r in run_bin("cq-ls", "-b", url).records]
    (length,) = run_bin("cq-len", "-b", url, unique).records
    assert length["messages"] == 3
    peeked = run_bin("cq-peek", "-b", url, unique).records
    assert [r["task"] for r in peeked] == ["tests.app.add"] * 3
    (purged,) = run_bin("cq-purge", "-b", url, "-Q", unique, "-f").records
    assert purged["purged"] == 3


def publish_event(port, task_id):
    """An event as a worker still connected to the Redis at ``port`` sends it; how many subscribers got it."""
    event = {"type": "task-succeeded", "uuid": task_id, "hostname": "tester@celops-test", "timestamp": time.time()}
    return command(port, "PUBLISH", "/0.celeryev/task.succeeded", kombu_event_envelope(event))


def test_cctl_and_cev_dump_through_the_sentinel_url_then_a_failover(cluster, sentinel_worker):
    """cev-dump and cq-len --watch 1 ride a SENTINEL FAILOVER; cctl ping answers right after it.

    The demoted master goes on answering for about 10 s, and the workers go on
    publishing there until it drops them: cev-dump reads it until it lets go,
    while it already reads the new master, so it misses nothing in between.
    """
    url = sentinel_url(cluster)
    pinged = run_bin("cctl", "-b", url, "ping", "-d", sentinel_worker.hostname)
    assert pinged.status == 0, pinged
    dump = RecordStream(spawn("cev-dump", "-b", url, "-u"))
    watch = spawn("cq-len", "-b", url, "--watch", "1", "-u", "celery")
    watched = RecordStream(watch)
    try:
        dump.until(lambda r: r.get("hostname") == sentinel_worker.hostname)
        watched.until(lambda r: r.get("queue") == "celery")
        old_port = cluster.master_port()
        new_port = cluster.failover()
        assert new_port != old_port
        probes = iter(range(1000))
        wait_for(lambda: publish_event(new_port, f"probe-{next(probes)}") > 0, 30, "cev-dump on the new master")
        assert command(old_port, "ROLE")[0] == b"master", "demoted already: this test needs Redis 7's ~10 s"
        assert publish_event(old_port, "sent-to-the-demoted-master") == 1, "cev-dump left the demoted master"
        dump.until(lambda r: r.get("uuid") == "sent-to-the-demoted-master")
        gap = dump.until(lambda r: r["type"] == "celops-gap", timeout=60)
        assert gap["from"].endswith(f":{old_port}/0") and gap["to"].endswith(f":{new_port}/0"), gap
        assert gap["since"] == gap["until"] and gap["dropped"] == 0, gap  # read both: nothing missed
        after = len(dump.records)  # the worker is back when it beats again: worker-offline comes before it listens
        dump.until(lambda r: r.get("hostname") == sentinel_worker.hostname and r["type"] == "worker-heartbeat"
                   and dump.records.index(r) >= after, timeout=60)
        pinged = run_bin("cctl", "-b", url, "ping", "-d", sentinel_worker.hostname, "-t", "10")
        assert pinged.status == 0, pinged
        seen = len(watched.records)
        watched.until(lambda r: watched.records.index(r) >= seen, timeout=60)
    finally:
        dump.process.send_signal(signal.SIGINT)
        watch.send_signal(signal.SIGINT)
        assert dump.finish() == 130
        assert watched.finish() == 130
    warnings = watched.stderr()
    assert "cq-len: broker back after" in warnings and f":{new_port}/0" in warnings, warnings


def test_a_wrong_master_name_is_one_clear_line(cluster):
    url = f"{cluster.url()}?master_name=no-such-master"
    result = run_bin("cctl", "-b", url, "ping", "-t", "2")
    assert result.status == 69
    assert result.stderr.count("\n") == 1, result.stderr
    assert "knows no master named 'no-such-master'" in result.stderr, result.stderr


def test_no_master_name_is_a_usage_error(cluster):
    result = run_bin("cq-ls", "-b", cluster.url())
    assert result.status == 2
    assert "master_name" in result.stderr, result.stderr


def test_every_sentinel_down_names_each_one(tmp_path):
    ports = [free_port(), free_port()]
    url = ";".join(f"sentinel://:{MASTER_SECRET}@127.0.0.1:{port}/0" for port in ports) + "?master_name=m"
    for command in (["cctl", "-b", url, "ping"], ["cq-len", "-b", url, "celery"]):
        result = run_bin(*command, "-t", "2")
        assert result.status == 69, result
        assert result.stderr.count("\n") == 1, result.stderr
        assert all(f"127.0.0.1:{port}" in result.stderr for port in ports), result.stderr
        assert MASTER_SECRET not in result.stderr


def test_a_sentinel_with_a_password(tmp_path):
    """Sentinel and master passwords are kept apart: the URL's is the master's, sentinel_kwargs the Sentinels'."""
    cluster = SentinelCluster(str(tmp_path), sentinels=1, sentinel_password=SECRET,
                              master_password=MASTER_SECRET).start()
    try:
        url = f"{cluster.url()}?master_name={MASTER_NAME}"
        refused = run_bin("cq-ls", "-b", url, "--debug")
        assert refused.status == 69, refused
        assert "the Sentinel wants a password" in refused.stderr, refused.stderr
        assert MASTER_SECRET not in refused.stderr
        wrong = run_bin("cq-ls", "-b", f"{url}&sentinel_password=wrong-{SECRET}")
        assert wrong.status == 69 and "refused the password" in wrong.stderr, wrong
        assert SECRET not in wrong.stderr and MASTER_SECRET not in wrong.stderr, wrong.stderr
        right = run_bin("cq-ls", "-b", f"{url}&sentinel_password={SECRET}")
        assert right.status == 0, right
    finally:
        cluster.stop()
