#!/usr/bin/env python3
"""cq-move against `celery migrate` and celery.contrib.migrate.move on the same data, side by side.

Usage: bench/bench_move.py [MESSAGES]   (default 100000)

Between two Redis queues (cq-move within one Redis; celery.contrib.migrate.move
with a callback that moves every message; celery migrate between two databases,
the nearest it does) and Redis to RabbitMQ (cq-move --to-broker; celery migrate).
Each run starts from the same MESSAGES celery task envelopes. Reports messages/s
and the ratio to celery migrate. Floors (issue 13): >= 5x celery migrate between
brokers; >= 50k messages/s within one Redis.
"""

import os
import subprocess
import sys
import time
import uuid

import redis

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import child_env, print_table, private_redis_and_vhost  # noqa: E402
from tests.queue_support import publish  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUEUE = "bench"


def fill(url, count):
    """``count`` real celery envelopes in QUEUE: one published by celery, copied with fresh ids."""
    client = redis.Redis.from_url(url)
    client.flushdb()
    (template_id,) = publish(url, [(QUEUE, 0, (1, 2))])
    template = client.rpop(QUEUE).decode()
    pipe = client.pipeline(transaction=False)
    for n in range(count):
        pipe.lpush(QUEUE, template.replace(template_id, str(uuid.uuid4())))
        if n % 10_000 == 9_999:
            pipe.execute()
    pipe.execute()


def timed(argv, env=None):
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT,
                   env=child_env(**(env or {})))
    return time.perf_counter() - started


def contrib_move(url, count):
    """celery.contrib.migrate.move: every message of QUEUE to QUEUE-moved (its own callback decides)."""
    from celery import Celery
    from celery.contrib.migrate import move
    from kombu import Queue

    app = Celery("bench", broker=url, set_as_current=False)
    started = time.perf_counter()
    move(lambda body, message: Queue(f"{QUEUE}-moved", routing_key=f"{QUEUE}-moved"), app=app,
         queues=[QUEUE], limit=count, timeout=2.0)
    return time.perf_counter() - started - 2.0  # its idle timeout ends the run, not work


def rabbit_ready(vhost):
    """How many messages RabbitMQ holds in QUEUE now (a passive declare: the management API lags)."""
    from kombu import Connection

    with Connection(vhost.url()) as connection:
        return connection.default_channel.queue_declare(QUEUE, passive=True).message_count


def main(argv):
    count = int(argv[0]) if argv else 100_000
    with private_redis_and_vhost() as (server, vhost):
        source, other = server.url(1), server.url(2)
        bin_move = [os.path.join(ROOT, "bin", "cq-move"), "-b", source, "-Q", QUEUE, "-f"]
        rows = []
        fill(source, count)
        within = timed([*bin_move, "--to", f"{QUEUE}-moved"])
        fill(source, count)
        contrib = contrib_move(source, count)
        redis.Redis.from_url(other).flushdb()
        fill(source, count)
        migrate_redis = timed([sys.executable, "-m", "celery", "migrate", "-Q", QUEUE, "-a", "-t", "2",
                               source, other]) - 2.0
        rows.append(["Redis -> Redis (one server)", f"{count / within:,.0f}", f"{count / contrib:,.0f}",
                     f"{count / migrate_redis:,.0f}", f"{migrate_redis / within:.1f}x"])
        # Redis -> RabbitMQ: the queue declared by a kombu consumer, as a worker would
        from kombu import Connection, Queue

        with Connection(vhost.url()) as connection:
            Queue(QUEUE, channel=connection.default_channel).declare()
        fill(source, count)
        between = timed([*bin_move, "--to-broker", vhost.url()])
        moved = rabbit_ready(vhost)
        fill(source, count)
        migrate_rabbit = timed([sys.executable, "-m", "celery", "migrate", "-Q", QUEUE, "-a", "-t", "2",
                                source, vhost.url()]) - 2.0
        rows.append(["Redis -> RabbitMQ", f"{count / between:,.0f}", "-", f"{count / migrate_rabbit:,.0f}",
                     f"{migrate_rabbit / between:.1f}x"])
        print(f"{count} messages; messages/s (higher is better); ratio: cq-move vs celery migrate")
        print_table(["move", "cq-move", "contrib.migrate.move", "celery migrate", "ratio"], rows)
        print(f"RabbitMQ received {moved} from cq-move and {rabbit_ready(vhost) - moved} from celery migrate")


if __name__ == "__main__":
    main(sys.argv[1:])
