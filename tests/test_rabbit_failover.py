"""cev-dump --queue on a RabbitMQ failover list whose node stops in the middle of the run: no event lost.

The list's nodes are independent (a second node of the test's own, then a
vhost on the shared node), as two unclustered brokers are: each has its own
queues. The durable --queue lives on the node cev-dump is connected to, so
what an operator can expect is:
- events published on a node where the queue exists wait there for cev-dump,
  also while it is switching hosts; cev-dump declares it where it lands, but
  a node it has not reached yet drops events until someone declares it there:
  run `cev-dump --queue NAME --duration 1 -b URL` once per node of the list
  (or use a cluster with quorum queues);
- the events the old node still held (not yet delivered, or delivered and
  not yet acknowledged) are not recovered: celery's events are transient
  messages (delivery_mode 1), which a stopped node drops;
- the switch is a celops-gap record with "from" and "to".
"""

import os
import subprocess
import time

import pytest

from tests.conftest import BIN, run_bin
from tests.rabbit_node_support import RabbitNode, available
from tests.support import RecordStream


@pytest.fixture
def second_node(tmp_path):
    if not available():
        pytest.skip("starting a RabbitMQ node of our own needs root and /usr/lib/rabbitmq/bin")
    node = RabbitNode(str(tmp_path / "rabbit")).start()
    yield node
    node.stop()


def publish_events(url, uuids):
    """Task events for ``uuids``, as a worker sends them: JSON on the celeryev topic exchange."""
    from kombu import Connection, Exchange, Producer

    exchange = Exchange("celeryev", type="topic")
    with Connection(url) as connection:
        producer = Producer(connection.default_channel, exchange=exchange, serializer="json")
        for task_id in uuids:
            producer.publish({"type": "task-succeeded", "uuid": task_id, "hostname": "publisher@celops-test",
                              "timestamp": time.time(), "clock": 1, "runtime": 0.1, "result": "1",
                              "utcoffset": 0, "pid": os.getpid()},
                             routing_key="task.succeeded", declare=[exchange])


def test_cev_dump_queue_rides_out_its_node_stopping_without_losing_an_event(second_node, rabbit_vhost, unique):
    queue = f"celops-audit-{unique}"
    shared = rabbit_vhost.url()
    for node in (second_node.url(), shared):  # the operator's step: the durable queue on every node of the list
        declared = run_bin("cev-dump", "-b", node, "--queue", queue, "--duration", "0.5")
        assert declared.status == 0, declared
    before = [f"{unique}-before-{n}" for n in range(20)]
    after = [f"{unique}-after-{n}" for n in range(20)]
    process = subprocess.Popen([os.path.join(BIN, "cev-dump"), "-b", f"{second_node.url()};{shared}",
                                "--queue", queue, "-u"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stream = RecordStream(process)
    try:
        publish_events(second_node.url(), before)
        stream.until(lambda record: record.get("uuid") == before[-1])
        second_node.stop()
        publish_events(shared, after)  # at once: cev-dump may still be switching; the queue there keeps them
        stream.until(lambda record: record.get("uuid") == after[-1])  # one queue: in the order published
        seen_uuids = [record.get("uuid") for record in stream.records]
        assert set(before + after) <= set(seen_uuids), "events were lost"
        gaps = [at for at, record in enumerate(stream.records) if record["type"] == "celops-gap"]
        assert len(gaps) == 1, stream.records
        gap = stream.records[gaps[0]]
        redacted_shared = rabbit_vhost.url().replace(":guest@", ":***@")
        assert (gap["from"], gap["to"]) == (second_node.url(password="***"), redacted_shared), gap
        last_before = max(seen_uuids.index(task_id) for task_id in before)
        first_after = min(seen_uuids.index(task_id) for task_id in after)
        assert last_before < gaps[0] < first_after
    finally:
        process.terminate()
        process.wait(30)
