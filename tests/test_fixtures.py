"""The test harness itself: real workers come up on both transports and run tasks."""

from tests.support import ping


def test_worker_runs_tasks_on_both_transports(broker_url, start_worker, unique):
    worker = start_worker(broker_url, queues=[unique])
    assert ping(broker_url, worker.hostname)
    from celery import Celery

    app = Celery(broker=broker_url, backend=None, set_as_current=False)
    reply = app.control.inspect(destination=[worker.hostname], timeout=2).active_queues()
    assert [q["name"] for q in reply[worker.hostname]] == [unique]
    worker.stop()
    assert worker.process.poll() is not None
