#!/usr/bin/env python3
"""cq-purge against `celery purge` on the same data, side by side; and how long each blocks Redis.

Usage: bench/bench_purge.py [MESSAGES]   (default 100000)

1. A Redis queue of MESSAGES real task envelopes over its four priority lists:
   the whole process of `cq-purge -Q Q -f` and of `celery purge -Q Q -f`, median
   of REPEAT refills, and what Redis's SLOWLOG says each command blocked the
   server for (celery/kombu delete with DEL, which frees a list inside the
   command; cq-purge with UNLINK, which frees it in a background thread).
2. The same queue on RabbitMQ (a private vhost): both end in one queue.purge.
3. cq-purge --drop N (the oldest N of MESSAGES, in one script): the nearest thing
   celery offers is none; `celery.contrib.migrate` cannot trim, so this row has
   no anchor and shows the rate only.

Timings are reported, never asserted. The machine is shared: expect noise.
"""

import os
import statistics
import subprocess
import sys
import time

import redis

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.common import child_env, print_table, private_redis_and_vhost  # noqa: E402
from celops.core.broker import Broker  # noqa: E402
from tests.queue_support import publish  # noqa: E402

QUEUE = "bench"
REPEAT = 5
CQ_PURGE = os.path.join(ROOT, "bin", "cq-purge")


def fill_redis(url, count):
    """``count`` copies of one celery message, spread over QUEUE's four priority lists."""
    client = redis.Redis.from_url(url)
    client.flushdb()
    (template_id,) = publish(url, [(QUEUE, 0, (1, 2))])
    template = client.rpop(QUEUE)
    keys = [key for _, key in Broker(url, "bench").priority_keys(QUEUE)]
    pipe = client.pipeline(transaction=False)
    for n in range(count):
        pipe.lpush(keys[n % len(keys)], template)
        if n % 10_000 == 9_999:
            pipe.execute()
    pipe.execute()
    return client, keys


def fill_rabbit(vhost, count):
    from kombu import Connection, Producer, Queue

    with Connection(vhost.url()) as connection:
        channel = connection.default_channel
        Queue(QUEUE, channel=channel).declare()
        producer = Producer(channel)
        for n in range(count):
            producer.publish({"n": n}, routing_key=QUEUE, retry=False)


def run(argv):
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT,
                   env=child_env())
    return time.perf_counter() - started


def redis_round(url, count, argv):
    """(seconds, microseconds Redis spent in the command that freed the lists) of one purge of a full queue."""
    client, keys = fill_redis(url, count)
    client.config_set("slowlog-log-slower-than", 0)
    client.slowlog_reset()
    seconds = run(argv)
    client.config_set("slowlog-log-slower-than", 10_000)
    freeing = [entry for entry in client.slowlog_get(1000)
               if entry["command"].split()[0].upper() in (b"DEL", b"UNLINK", b"EVAL", b"EVALSHA")]
    assert sum(client.llen(key) for key in keys) == 0, "the queue was not purged"
    return seconds, sum(entry["duration"] for entry in freeing)


def medians(rounds):
    return statistics.median(seconds for seconds, _ in rounds), statistics.median(us for _, us in rounds)


def main(argv):
    count = int(argv[0]) if argv else 100_000
    with private_redis_and_vhost() as (server, vhost):
        url = server.url(1)
        celery_purge = [sys.executable, "-m", "celery", "-b", url, "purge", "-f", "-Q", QUEUE]
        ours = medians([redis_round(url, count, [CQ_PURGE, "-b", url, "-Q", QUEUE, "-f"])
                        for _ in range(REPEAT)])
        theirs = medians([redis_round(url, count, celery_purge) for _ in range(REPEAT)])
        rows = [[f"Redis, {count} messages over 4 priority lists", f"{ours[0]:.3f} s", f"{theirs[0]:.3f} s",
                 f"{theirs[0] / ours[0]:.1f}x"],
                ["  Redis blocked by the command that frees them", f"{ours[1]:,.0f} us (UNLINK)",
                 f"{theirs[1]:,.0f} us (DEL)", f"{theirs[1] / max(ours[1], 1):.0f}x"]]
        rabbit = []
        for argv_ in ([CQ_PURGE, "-b", vhost.url(), "-Q", QUEUE, "-f"],
                      [sys.executable, "-m", "celery", "-b", vhost.url(), "purge", "-f", "-Q", QUEUE]):
            times = []
            for _ in range(REPEAT):
                fill_rabbit(vhost, min(count, 20_000))
                times.append(run(argv_))
            rabbit.append(statistics.median(times))
        rows.append([f"RabbitMQ, {min(count, 20_000)} messages", f"{rabbit[0]:.3f} s", f"{rabbit[1]:.3f} s",
                     f"{rabbit[1] / rabbit[0]:.1f}x"])
        drops = []
        for _ in range(REPEAT):
            fill_redis(url, count)
            drops.append(run([CQ_PURGE, "-b", url, "-Q", QUEUE, "-f", "--drop", str(count // 2)]))
        rows.append([f"Redis, --drop {count // 2} of {count}", f"{statistics.median(drops):.3f} s", "-", "-"])
        print(f"median of {REPEAT}; whole processes, start-up included; ratio: celery's over cq-purge's")
        print_table(["purge", "cq-purge", "celery purge", "ratio"], rows)


if __name__ == "__main__":
    main(sys.argv[1:])
