"""Print queue lengths, one queue record per queue, once or every few seconds.

The queues are the ones named, the ones read from standard input with -
(plain lines or records with a "queue" field, such as cq-ls output), or,
when none are named, every queue cq-ls would list (and the -A app's).

On Redis, messages is the sum of the queue's priority lists (QUEUE, then
QUEUE + sep + step for steps 3, 6, 9, under the app's global_keyprefix);
by_priority has each list. A missing list is an empty queue. All lengths
come from one pipelined round trip however many queues there are.

On RabbitMQ, ready and consumers come live from a passive queue_declare
(exact, as of now); unacked and memory, which AMQP does not tell, from the
management API, whose statistics are samples: stats_age says how old they
are. messages = ready + unacked. When the API cannot be reached (or has no
statistics yet for a new queue) unacked and memory are null and the record
says "source": "amqp".

A queue the broker does not know (Redis: no binding names it and none of
its lists exists; RabbitMQ: no such queue) gets no record but a warning,
"cq-len: unknown queue 'NAME' (...)", and the exit status is 1, with or
without --max: a typo in a cron job's queue name never reads as an empty
queue. A key that bears a queue's name but is not a list gets an error
record (see RECORDS) and exit 65; every other queue is still measured.
"""

import time

from celops.core import cli
from celops.core.exits import BrokerUnavailable, ExitStatus, UsageError
from celops.core.queues import UNACKED_CHUNK, UNACKED_LIMIT, add_queue_argument
from celops.core.rabbit import add_management_option
from celops.core.scrape import LISTEN_HELP, listen_address


def build_parser():
    parser = cli.command_parser("cq-len", __doc__, timeout=5.0,
                                formats={"prom": "the Prometheus text exposition format"})
    add_queue_argument(parser, help="queues to measure; - reads names from standard input; none means all")
    parser.add_argument("--watch", type=cli.positive_float, metavar="SECONDS",
                        help="repeat every SECONDS, forever: one batch of records per tick, each with a timestamp; "
                             "rides out broker outages (see WATCH)")
    parser.add_argument("--textfile", metavar="PATH",
                        help="write the Prometheus format to PATH atomically (temp file, then rename), "
                             "for node_exporter's textfile collector; implies --format prom")
    parser.add_argument("--max", type=int, metavar="N",
                        help="exit 1 when any queue holds more than N messages, or is unknown (for cron alerts)")
    parser.add_argument("--listen", type=listen_address, metavar="ADDR",
                        help=f"serve the Prometheus format at http://ADDR/metrics, measured on each scrape; "
                             f"ADDR is {LISTEN_HELP} (see SCRAPE ENDPOINT)")
    add_management_option(parser)
    cli.document_names_input(parser)
    parser.man_sections += [
        ("WATCH",
         "With --watch, a broker that goes away after the first batch is not the end: cq-len says so on "
         "stderr (\"cq-len: cannot reach broker URL: REASON; retrying\"), tries again after 0.1 s, doubling up "
         "to 5 s between tries, says \"cq-len: broker back after N s\" and goes on with the next batch. No "
         "records are written meanwhile. Only a broker that cannot be reached at start-up ends cq-len "
         "(exit 69)."),
        ("SEPARATOR AND PRIORITY STEPS",
         "On Redis, kombu joins a queue's name and priority step with the transport option sep, and binds "
         "queues with binding members ROUTING_KEY + sep + PATTERN + sep + QUEUE. Without -A, cq-len takes sep "
         "from the binding sets (the one that splits the most members in three) and the steps from the lists "
         "that exist under it (one SCAN MATCH walk, COUNT 1000 a call), and says on stderr when either is "
         "not kombu's default. With -A the app's broker_transport_options are used as they are."),
        ("UNACKED ON REDIS",
         "A Redis broker keeps each delivered but unacknowledged message in the hash \"unacked\" "
         "(the transport option unacked_key) as [message, exchange, routing_key]. cq-len counts the entries "
         "whose routing key is the queue's name (celery's routing) with a short script run inside Redis, "
         f"{UNACKED_CHUNK} entries (one HSCAN step) a call, the first call in the same pipeline as the lengths: "
         "no message crosses the network and no call holds Redis up for long. The hash normally holds "
         "only the workers' prefetched messages; when it holds more than "
         f"{UNACKED_LIMIT} entries cq-len does not read it and reports \"unacked\": null, with a warning. "
         "Unacked messages are not in the lists, so they are not in messages."),
        ("CAVEATS",
         "RabbitMQ's management API samples its statistics (every 5 s by default: collect_statistics_interval), "
         "so unacked and memory may lag a few seconds behind: stats_age is the seconds since the API's newest "
         "sample (its own timestamps, against this machine's clock). ready and consumers are exact, from a "
         "passive queue_declare per queue; a queue too new to have statistics has \"source\": \"amqp\"."),
        ("PROMETHEUS",
         "--format prom writes the gauges celery_queue_length{queue}, celery_queue_unacked{queue}, "
         "celery_queue_consumers{queue} and celery_queue_priority_length{queue,priority} (Redis); "
         "counts a broker does not know are left out."),
        ("SCRAPE ENDPOINT",
         "--listen ADDR serves the same gauges as --format prom at http://ADDR/metrics, through "
         "prometheus_client's WSGI app, until SIGTERM (exit 0) or Ctrl-C. Each scrape measures the queues "
         "then and there (a custom collector; one pipelined round trip on Redis, a passive declare per queue "
         "and one management API call on RabbitMQ), so a scrape is never older than itself and the scrape "
         "interval is Prometheus' to choose; --watch is not needed and not taken. The broker is measured once "
         "at start: unreachable then, exit 69. A broker that goes away later makes each scrape a 503 whose "
         "body says why (Prometheus' up goes to 0, no stale numbers), with one line on stderr when scrapes "
         "start failing and one when they answer again; the next scrape reconnects."),
        ("EXAMPLES",
         "  cq-len\n  cq-len celery video -t 2\n  cq-ls | grep -v test | cq-len -\n"
         "  cq-len --textfile /var/lib/node_exporter/celery.prom    # from cron\n"
         "  cq-len --max 1000 video >/dev/null || echo 'backlog (or no queue video)!'\n"
         "  cq-len --watch 5 | jq -c '[.timestamp, .queue, .messages]'\n"
         "  cq-len --listen 127.0.0.1:9809    # for Prometheus to scrape"),
    ]
    return parser


def run(ctx):
    from celops.core.queues import QueueReport

    args = ctx.args
    if args.watch and args.max is not None:
        raise UsageError("--max is for one-shot runs (cron); it cannot be used with --watch")
    if args.listen and (args.watch or args.max is not None or args.textfile):
        raise UsageError("--listen measures on each scrape: it takes no --watch, --max or --textfile")
    if args.textfile:
        args.format = "prom"
    broker = ctx.broker
    names, bad_lines = _queue_names(ctx)
    if args.listen:
        return _serve(ctx, broker, names)
    report = QueueReport(ctx, records_on_stdout=args.format != "prom")
    connect = _connector(ctx, broker, names)
    measure = connect()
    while True:
        try:
            records = report.sorted_out(measure())
        except BrokerUnavailable as outage:
            if not args.watch:
                raise
            measure = _ride_out(ctx, outage, connect)
            continue
        if args.format == "prom":
            _write_prometheus(ctx, records)
        else:
            stamp = {"timestamp": time.time()} if args.watch else {}
            for record in records:
                ctx.out.write({**record, **stamp})
            ctx.out.flush()
        if not args.watch:
            break
        time.sleep(args.watch)
    over = [r["queue"] for r in records if args.max is not None and (r["messages"] or 0) > args.max]
    for name in over:
        ctx.warn(f"queue {name!r} holds more than {args.max} messages")
    if bad_lines:
        return ExitStatus.DATA_ERROR
    return report.status() or (ExitStatus.FAILURE if over else ExitStatus.OK)


def _ride_out(ctx, outage, reconnect):
    """Say the broker went away, then ``reconnect()`` with backoff until it answers (the new master, the next
    host: ``celops.core.reconnect``); say where it came back; returns what ``reconnect`` gave."""
    import threading

    from celops.core.reconnect import Reconnection

    ctx.warn(f"{outage}; retrying")
    reconnection = Reconnection(ctx.broker, outage.reason)
    connected = reconnection.attempt(reconnect, threading.Event())
    ctx.warn(reconnection.warning())
    return connected


def _queue_names(ctx):
    """``(names, bad input lines)``: the named queues, ``-`` replaced by names read from stdin; None means all."""
    if not ctx.args.queues:
        return None, 0
    from celops.core.ndjson import Reader

    names = []
    reader = Reader(["-"], ctx.io.stdin, ctx.warn)
    for name in ctx.args.queues:
        names.extend(reader.values(["queue"]) if name == "-" else [name])
    return list(dict.fromkeys(names)), reader.bad_lines


def _connector(ctx, broker, names):
    """What connects anew (after an outage too): returns the transport's measurer of ``names``, one batch of
    queue records a call on one connection (None ``names``: every queue the broker has, and the -A app's)."""
    return lambda: broker.transport.measurer(names, ctx.args.timeout, ctx.args.management_url, ctx.warn)


def _write_prometheus(ctx, records):
    from prometheus_client import CollectorRegistry

    from celops.core.outfiles import write_metrics

    families = _prometheus_families(records)

    class Batch:
        def collect(self):
            return families

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Batch())
    write_metrics(registry, ctx.args.textfile, ctx.io.stdout)


def _prometheus_families(records):
    """The gauges of one batch of queue records (error records have no counts: they are left out)."""
    from prometheus_client.core import GaugeMetricFamily

    gauges = {
        "messages": GaugeMetricFamily("celery_queue_length", "Messages in the queue", labels=["queue"]),
        "unacked": GaugeMetricFamily("celery_queue_unacked", "Messages delivered, not yet acknowledged",
                                     labels=["queue"]),
        "consumers": GaugeMetricFamily("celery_queue_consumers", "Consumers of the queue", labels=["queue"]),
    }
    by_priority = GaugeMetricFamily("celery_queue_priority_length", "Messages in one priority list of the queue",
                                    labels=["queue", "priority"])
    for record in records:
        for field, gauge in gauges.items():
            if record[field] is not None:
                gauge.add_metric([record["queue"]], record[field])
        for step, length in (record["by_priority"] or {}).items():
            by_priority.add_metric([record["queue"], step], length)
    return [*gauges.values(), by_priority]


class ScrapeCollector:
    """--listen: every scrape measures the queues anew (one pipelined round trip on Redis).

    Scrapes may come at once (one thread each): they take turns on the one
    connection. A broker gone makes the scrape a 503 (see celops.core.scrape)
    and the next scrape connects afresh. An unknown queue or a bad key is
    said once on stderr, not at every scrape; it has no series.
    """

    def __init__(self, ctx, connect):
        import threading

        from celops.core.queues import QueueReport

        self.report = QueueReport(ctx, records_on_stdout=False)  # says each queue's problem once a run
        self.connect = connect
        self.measure = None
        self.lock = threading.Lock()

    def collect(self):
        with self.lock:
            try:
                self.measure = self.measure or self.connect()
                return _prometheus_families(self.report.sorted_out(self.measure()))
            except BrokerUnavailable:
                self.measure = None
                raise


def _serve(ctx, broker, names):
    """--listen: measure once now (an unreachable broker is exit 69 here), then serve until SIGTERM."""
    from prometheus_client import CollectorRegistry

    from celops.core.scrape import Endpoint, serve_until_stopped

    collector = ScrapeCollector(ctx, _connector(ctx, broker, names))
    collector.collect()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    endpoint = Endpoint(registry, ctx.args.listen, ctx.warn)
    try:
        serve_until_stopped()
    finally:
        endpoint.close()
    return ExitStatus.OK


def main(argv=None, io=None):
    return cli.execute(build_parser, run, argv, io)
