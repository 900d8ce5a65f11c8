"""Broker checks: it answers, how fast, and (Redis) how close it is to maxmemory."""

from celops.checks import check, finding
from celops.checks.facts import Missing

CELERY_REDIS_DOC = "celery docs: Backends and Brokers, Using Redis"


@check("broker.reachable", "the broker accepts a connection (and, on Redis, AUTH, SELECT and PING)",
       severity="crit when it cannot be reached; every check needing it is then unknown",
       source="celery docs: Monitoring and Management Guide", option="-t",
       hint="check the URL (-b), the network and the broker's own logs; cq-len -b URL shows whether it answers")
def reachable(facts, args):
    try:
        facts.need("broker")
    except Missing as exc:
        yield finding("crit", "broker", str(exc))


@check("broker.latency", "the broker's round trip (Redis: PING; RabbitMQ: opening a connection)",
       severity="warn above --max-latency", option="--max-latency", source="seed: on-call practice",
       hint="a slow broker slows every task: look at its load, its network path and its memory")
def latency(facts, args):
    broker = facts.need("broker")
    seconds = round(broker["latency"], 6)
    yield finding("warn" if seconds > args.max_latency else "ok", "broker",
                  f"{broker['latency_of']} took {seconds * 1000:.2f} ms", seconds, args.max_latency)


@check("broker.memory", "Redis memory use against maxmemory (a full Redis refuses or evicts messages)",
       severity="warn above --max-memory percent of maxmemory, crit above 95; ok without maxmemory",
       option="--max-memory", source=CELERY_REDIS_DOC, kind="redis",
       hint="drain or purge queues (cq-len, cq-purge), expire results (cres), or raise maxmemory")
def memory(facts, args):
    broker = facts.need("broker")
    used, limit = broker["used_memory"], broker["maxmemory"]
    if not limit:
        yield finding("ok", "broker", f"{used} bytes used, no maxmemory set", used)
        return
    percent = round(100 * used / limit, 1)
    severity = "crit" if percent > 95 else "warn" if percent > args.max_memory else "ok"
    yield finding(severity, "broker", f"{used} of {limit} bytes ({percent}% of maxmemory) used", percent,
                  args.max_memory)
