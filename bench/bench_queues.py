#!/usr/bin/env python3
"""cq-len and cq-peek against a private Redis, side by side with the obvious alternatives.

cq-len over 100 queues x 4 priority levels: round trips and wall time, against
an LLEN-per-key loop (redis-py) and Flower's approach (flower.utils.broker.Redis,
one async pipeline of LLENs, no unacked). The cold-start figure is the whole
`cq-len` process, as cron runs it; the floor is 1 round trip and 0.35 s.

cq-peek of 10,000 real task messages: records/s of the whole process, against
a hand-written LRANGE + json/base64 decode loop in redis-py (what the seeds do).

Timings are reported, never asserted. The machine is shared: expect noise.
"""

import asyncio
import base64
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.common import child_env, median_time  # noqa: E402
from celops.core.broker import Broker  # noqa: E402
from tests.queue_support import publish  # noqa: E402
from tests.support import RedisServer  # noqa: E402

QUEUES = [f"bench-queue-{i:03d}" for i in range(100)]
LAYOUT = Broker("redis://127.0.0.1/0", "bench")  # celery's default key layout: sep, priority steps
PEEK_MESSAGES = 10_000
REPEAT = 15

# Counts cq-len's round trips: every pipeline of celops.core.resp (a single command is a pipeline of one).
COUNT_ROUND_TRIPS = """
import sys
from celops.core import resp
sent = [0]
original = resp.Redis.pipeline
def counting(self, commands):
    sent[0] += 1
    return original(self, commands)
resp.Redis.pipeline = counting
from celops.commands import cq_len
cq_len.main(sys.argv[1:])
print(sent[0], file=sys.stderr)
"""


def timed(fn, repeat=REPEAT):
    """Median seconds of ``fn()`` (after one warm-up call)."""
    return median_time(fn, repeat)[0]


def priority_keys(queue):
    return [key for _, key in LAYOUT.priority_keys(queue)]


def fill(url):
    import redis

    client = redis.Redis.from_url(url)
    pipe = client.pipeline(transaction=False)
    for n, queue in enumerate(QUEUES):
        pipe.sadd("_kombu.binding." + queue, LAYOUT.sep.join([queue, "", queue]))
        for step, key in LAYOUT.priority_keys(queue):
            pipe.lpush(key, *[b"x"] * (1 + (n + step) % 7))
    pipe.execute()
    return client


def llen_loop(client):
    return {queue: sum(client.llen(key) for key in priority_keys(queue)) for queue in QUEUES}


def cq_len_bench(url, client):
    import redis.connection

    from celops.core.broker import Broker
    from celops.core.queues import redis_client, redis_lengths
    from flower.utils.broker import Redis as FlowerRedis

    rows = []
    expected = llen_loop(client)
    broker = Broker(url, "bench")
    fast = redis_client(broker, 5.0)

    # round trips, warm connections: celops counts its pipelines, redis-py its sends
    sent = [0]
    original = redis.connection.AbstractConnection.send_packed_command

    def counting(self, command, check_health=True):
        sent[0] += 1
        return original(self, command, check_health)

    redis.connection.AbstractConnection.send_packed_command = counting
    llen_loop(client)
    loop_trips = sent[0]
    redis.connection.AbstractConnection.send_packed_command = original
    process = subprocess.run([sys.executable, "-c", COUNT_ROUND_TRIPS, "-b", url, *QUEUES], capture_output=True,
                             text=True, cwd=ROOT, check=True)
    process_trips = int(process.stderr.split()[-1])
    records = redis_lengths(broker, fast, QUEUES, print)
    assert {r["queue"]: r["messages"] for r in records} == expected

    def flower():
        async def go():
            return await FlowerRedis(url, broker_options={}).queues(QUEUES)
        return asyncio.run(go())

    assert {r["name"]: r["messages"] for r in flower()} == expected
    flower_trips = 1  # one async pipeline (read from flower/utils/broker.py); its handshake not counted

    warm_celops = timed(lambda: redis_lengths(broker, fast, QUEUES, print))
    warm_loop = timed(lambda: llen_loop(client))
    warm_flower = timed(flower)  # includes its fresh connection, as Flower makes one per call

    env = child_env()

    def process(*argv):
        return lambda: subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env)

    cq_len = os.path.join(ROOT, "bin", "cq-len")
    cold = timed(process(cq_len, "-b", url, *QUEUES), repeat=10)
    cold_all = timed(process(cq_len, "-b", url), repeat=10)
    every_key = [key for queue in QUEUES for key in priority_keys(queue)]
    cold_loop = timed(process(sys.executable, "-c", "import redis, sys; c = redis.Redis.from_url(sys.argv[1]); "
                              "[c.llen(key) for key in sys.argv[2:]]", url, *every_key), repeat=10)

    rows.append(("cq-len lengths+unacked (warm, in-process)", 1, warm_celops, 1.0))
    rows.append(("LLEN-per-key loop, redis-py (warm)", loop_trips, warm_loop, warm_loop / warm_celops))
    rows.append(("Flower's pipeline, new connection per call", flower_trips, warm_flower, warm_flower / warm_celops))
    print(f"\ncq-len: {len(QUEUES)} queues x {len(LAYOUT.priority_steps)} priority lists = {len(every_key)} keys")
    print(f"{'approach':<48}{'round trips':>12}{'median s':>11}{'vs cq-len':>11}")
    for name, trips, seconds, ratio in rows:
        print(f"{name:<48}{trips:>12}{seconds:>11.5f}{ratio:>10.1f}x")
    print("\ncold start, whole process (median of 10):")
    print(f"  cq-len with 100 named queues:        {cold:.3f} s  "
          f"({process_trips} round trips in all: AUTH/SELECT/PING + 1 pipeline)  floor 0.35 s: "
          f"{'met' if cold <= 0.35 else 'MISSED'}")
    print(f"  cq-len discovering them (cq-ls set):  {cold_all:.3f} s")
    print(f"  python LLEN loop process:             {cold_loop:.3f} s  ({cold_loop / cold:.2f}x cq-len)")


def cq_peek_bench(url):
    import redis

    queue = "bench-peek"
    publish(url, [(queue, n % 10, (n, n)) for n in range(PEEK_MESSAGES)])
    client = redis.Redis.from_url(url)
    assert sum(client.llen(key) for key in priority_keys(queue)) == PEEK_MESSAGES

    def peek():
        out = subprocess.run([os.path.join(ROOT, "bin", "cq-peek"), "-b", url, "-n", "0", queue],
                             check=True, stdout=subprocess.PIPE, env=child_env()).stdout
        assert out.count(b"\n") == PEEK_MESSAGES

    def by_hand():
        records = 0
        for key in priority_keys(queue):
            for raw in client.lrange(key, 0, -1):
                message = json.loads(raw)
                json.loads(base64.b64decode(message["body"]))
                records += 1
        assert records == PEEK_MESSAGES

    peek_s = timed(peek, repeat=5)
    hand_s = timed(by_hand, repeat=5)
    print(f"\ncq-peek of {PEEK_MESSAGES} task messages (median of 5):")
    print(f"  cq-peek -n 0, whole process, decoded records:   {peek_s:.3f} s  {PEEK_MESSAGES / peek_s:>9,.0f} records/s")
    print(f"  LRANGE + json/base64 decode in-process, no output: {hand_s:.3f} s  "
          f"{PEEK_MESSAGES / hand_s:>9,.0f} records/s  ({hand_s / peek_s:.2f}x cq-peek's time)")


def main():
    with tempfile.TemporaryDirectory() as directory:
        server = RedisServer(directory).start()
        try:
            url = server.url(0)
            client = fill(url)
            cq_len_bench(url, client)
            cq_peek_bench(server.url(1))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
