"""Fire-and-forget broadcasts reach real workers on both transports."""

import time

from celops.core.broadcast import send
from celops.core.broker import Broker


def test_send_enable_events_reaches_the_worker(broker_url, start_worker, unique):
    from celery import Celery

    worker = start_worker(broker_url, queues=[unique], events=False)  # -E could not be toggled
    app = Celery(broker=broker_url, set_as_current=False)

    def disable():
        replies = app.control.broadcast("disable_events", destination=[worker.hostname], reply=True, timeout=2)
        return replies[0][worker.hostname]["ok"]

    with Broker(broker_url, "test").kombu(5) as connection:
        send(connection, "enable_events", destination=[worker.hostname])
    deadline = time.monotonic() + 10
    # disable_events answers "task events disabled" only when they had been enabled again
    while disable() != "task events disabled":
        assert time.monotonic() < deadline, "the worker never enabled events"
