"""Publishing real task messages for the cq-* tests, through celery's apply_async."""

from celery import Celery


def publish(url, sends, transport_options=None, serializer="json", protocol=2):
    """Send ``tests.app.add`` once per ``(queue, priority, args)``; return the task ids in order."""
    app = Celery("celops-test-publisher", broker=url, set_as_current=False)
    app.conf.broker_transport_options = transport_options or {}
    app.conf.task_serializer = serializer
    app.conf.task_protocol = protocol

    @app.task(name="tests.app.add")
    def add(x, y):
        return x + y

    try:
        with app.producer_pool.acquire(block=True) as producer:
            return [add.apply_async(args, queue=queue, priority=priority, producer=producer).id
                    for queue, priority, args in sends]
    finally:
        app.close()


def fill_copies(url, queue, count, unique):
    """``count`` copies of one celery message in the Redis list ``queue``, each with its own task id (made of
    ``unique``), oldest first; returns the ids in delivery order. Fast: one message published, the rest pushed."""
    import redis

    (template_id,) = publish(url, [(queue, 0, (0, 0))])
    client = redis.Redis.from_url(url)
    template = client.rpop(queue).decode()
    ids = [f"{n:08d}-0000-4000-8000-{unique}{n:04x}"[:36] for n in range(count)]
    pipe = client.pipeline(transaction=False)
    for task_id in ids:
        pipe.lpush(queue, template.replace(template_id, task_id))
    pipe.execute()
    return ids
