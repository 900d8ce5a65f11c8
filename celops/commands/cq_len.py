"""Print queue lengths, one queue record per queue, once or every few seconds.

The queues are the ones named, the ones read from standard input with -
(plain lines or records with a "queue" field, such as cq-ls output), or,
when none are named, every queue cq-ls would list.

On Redis, messages is the sum of the queue's priority lists (QUEUE, then
QUEUE + sep + step for steps 3, 6, 9, under the app's global_keyprefix);
by_priority has each list. A missing list is an empty queue. All lengths
come from one pipelined round trip however many queues there are.

On RabbitMQ, the counts come from the management API (messages =
ready + unacked, consumers, memory). When the API cannot be reached, a
passive queue_declare gives ready messages and consumers only, and the
record says "source": "amqp".
"""

import time

from celops.core import cli
from celops.core.exits import ExitStatus, UsageError
from celops.core.queues import UNACKED_LIMIT, add_queue_argument
from celops.core.rabbit import add_management_option


def build_parser():
    parser = cli.command_parser("cq-len", __doc__, timeout=5.0)
    add_queue_argument(parser, help="queues to measure; - reads names from standard input; none means all")
    parser.add_argument("--watch", type=cli.positive_float, metavar="SECONDS",
                        help="repeat every SECONDS, forever: one batch of records per tick, each with a timestamp")
    parser.add_argument("--format", choices=["ndjson", "prom"], default="ndjson",
                        help="ndjson records (default) or the Prometheus text exposition format")
    parser.add_argument("--textfile", metavar="PATH",
                        help="write the Prometheus format to PATH atomically (temp file, then rename), "
                             "for node_exporter's textfile collector; implies --format prom")
    parser.add_argument("--max", type=int, metavar="N",
                        help="exit 1 when any queue holds more than N messages (for cron alerts)")
    add_management_option(parser)
    parser.man_sections += [
        ("RECORDS",
         '{"type":"queue","queue":NAME,"messages":N,"ready":N,"unacked":N|null,"consumers":N|null,\n'
         '   "memory":BYTES|null,"by_priority":{"0":N,"3":N,"6":N,"9":N}|null,\n'
         '   "source":"redis"|"management"|"amqp"}'
         "\n\nWith --watch every record also has \"timestamp\": epoch seconds of its batch."),
        ("UNACKED ON REDIS",
         "A Redis broker keeps each delivered but unacknowledged message in the hash \"unacked\" "
         "(the transport option unacked_key) as [message, exchange, routing_key]. cq-len counts the entries "
         "whose routing key is the queue's name (celery's routing) with a short script run inside Redis, "
         "in the same pipeline as the lengths: no message crosses the network. The hash normally holds "
         "only the workers' prefetched messages; when it holds more than "
         f"{UNACKED_LIMIT} entries cq-len does not read it and reports \"unacked\": null, with a warning. "
         "Unacked messages are not in the lists, so they are not in messages."),
        ("CAVEATS",
         "RabbitMQ's management API samples its statistics (every 5 s by default: collect_statistics_interval), "
         "so its counts may lag a few seconds behind; a queue too new to have statistics is asked by passive "
         "queue_declare instead (\"source\": \"amqp\")."),
        ("PROMETHEUS",
         "--format prom writes the gauges celery_queue_length{queue}, celery_queue_unacked{queue}, "
         "celery_queue_consumers{queue} and celery_queue_priority_length{queue,priority} (Redis); "
         "counts a broker does not know are left out."),
        ("EXAMPLES",
         "  cq-len\n  cq-len celery video -t 2\n  cq-ls | grep -v test | cq-len -\n"
         "  cq-len --textfile /var/lib/node_exporter/celery.prom    # from cron\n"
         "  cq-len --max 1000 >/dev/null || echo 'backlog!'\n"
         "  cq-len --watch 5 | jq -c '[.timestamp, .queue, .messages]'"),
    ]
    return parser


def run(ctx):
    args = ctx.args
    if args.watch and args.max is not None:
        raise UsageError("--max is for one-shot runs (cron); it cannot be used with --watch")
    if args.textfile:
        args.format = "prom"
    broker = ctx.broker
    names, bad_lines = _queue_names(ctx)
    measure = _measurer(ctx, broker, names)
    while True:
        records = measure()
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
    return ExitStatus.FAILURE if over else ExitStatus.OK


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


def _measurer(ctx, broker, names):
    """A function returning one batch of queue records, reusing one connection across ticks."""
    timeout = ctx.args.timeout
    if broker.transport == "redis":
        from celops.core.queues import existing_queues, redis_client, redis_lengths

        client = redis_client(broker, timeout)

        def measure():
            queues = names if names is not None else existing_queues(broker, timeout, client=client)
            return redis_lengths(broker, client, queues, ctx.warn)
        return measure

    from celops.core.queues import rabbit_lengths

    connection = broker.kombu(timeout)
    return lambda: rabbit_lengths(broker, connection, names, timeout, ctx.args.management_url, ctx.warn)


def _write_prometheus(ctx, records):
    from prometheus_client import CollectorRegistry, generate_latest
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

    class Batch:
        def collect(self):
            return [*gauges.values(), by_priority]

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Batch())
    if ctx.args.textfile:
        from celops.core.outfiles import write_textfile

        write_textfile(ctx.args.textfile, registry)
    else:
        ctx.io.stdout.write(generate_latest(registry))
        ctx.io.stdout.flush()


def main(argv=None, io=None):
    return cli.execute(build_parser, run, argv, io)
