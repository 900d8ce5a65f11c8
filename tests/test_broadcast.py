"""Fire-and-forget broadcasts reach real workers on both transports."""

from celops.core.broadcast import send
from celops.core.broker import Broker
from tests.support import wait_for


def test_send_enable_events_reaches_the_worker(broker_url, start_worker, unique):
    from celery import Celery

    worker = start_worker(broker_url, queues=[unique], events=False)  # -E could not be toggled
    app = Celery(broker=broker_url, set_as_current=False)

    def events_were_enabled():
        """disable_events answers "task events disabled" only when they had been enabled again."""
        replies = app.control.broadcast("disable_events", destination=[worker.hostname], reply=True, timeout=2)
        return any(reply.get(worker.hostname, {}).get("ok") == "task events disabled" for reply in replies)

    with Broker(broker_url, "test").kombu(5) as connection:
        send(connection, "enable_events", destination=[worker.hostname])
    wait_for(events_were_enabled, 10, "the worker enabling events")
