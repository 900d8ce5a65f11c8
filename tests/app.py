"""The example Celery app the tests run real workers of.

The broker comes from $CELOPS_TEST_BROKER; $CELOPS_TEST_TRANSPORT_OPTIONS
(JSON) sets broker_transport_options, e.g. a Redis global_keyprefix.
$CELOPS_TEST_RESULT_BACKEND sets result_backend (none without it) and
$CELOPS_TEST_RESULT_EXTENDED=1 turns result_extended on. $CELOPS_TEST_EXTRA_TASK=1
registers one more task, tests.app.extra (a worker on newer code than the others).
"""

import json
import os
import time

from celery import Celery

import tests.control_commands  # noqa: F401  (registers cctl call's custom commands in the worker)

app = Celery("tests", broker=os.environ.get("CELOPS_TEST_BROKER", "redis://127.0.0.1:6379/15"))
app.conf.update(
    broker_transport_options=json.loads(os.environ.get("CELOPS_TEST_TRANSPORT_OPTIONS") or "{}"),
    broker_connection_retry_on_startup=True,
    task_send_sent_event=True,
    worker_hijack_root_logger=False,
    worker_prefetch_multiplier=1,
    task_acks_late=False,
    result_backend=os.environ.get("CELOPS_TEST_RESULT_BACKEND") or None,
    result_extended=os.environ.get("CELOPS_TEST_RESULT_EXTENDED") == "1",
)


@app.task
def add(x, y):
    return x + y


@app.task
def fail(message="boom"):
    raise ValueError(message)


@app.task
def echo(*args, **kwargs):
    """Returns what it was called with, to show which arguments a task ran with."""
    return {"args": list(args), "kwargs": kwargs}


@app.task
def sleep(seconds):
    time.sleep(seconds)
    return seconds


@app.task(bind=True, max_retries=3)
def flaky(self, failures=1):
    """Retries ``failures`` times, then succeeds."""
    if self.request.retries < failures:
        raise self.retry(countdown=0.1, exc=RuntimeError("not yet"))
    return "ok"


if os.environ.get("CELOPS_TEST_EXTRA_TASK") == "1":
    @app.task
    def extra():
        return "only on some workers"
