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


def test_ping_cannot_deadlock_on_the_shared_connection_pool(fresh_redis_url):
    """Concurrent pings (bench start_workers) share kombu's one pool per URL: a ping may hold at most one of it.

    celery's broadcast holds a pooled connection and then takes a second one for its producer; with every
    slot but one taken by other pings, the second acquire blocks forever (what hung bench_ccheck's 10 pings).
    """
    import threading

    from celery import Celery

    app = Celery(broker=fresh_redis_url, set_as_current=False)
    held = [app.pool.acquire(block=True) for _ in range(app.pool.limit - 1)]
    answered = threading.Event()

    def ping_nobody():
        ping(fresh_redis_url, "nobody@celops-test", timeout=0.2)
        answered.set()

    threading.Thread(target=ping_nobody, daemon=True).start()
    try:
        assert answered.wait(30), "ping blocked on kombu's exhausted connection pool"
    finally:
        for connection in held:
            connection.release()
        app.close()
