"""List the queues that exist on the broker, one queue record per line.

On Redis the queues come from kombu's binding sets (found with SCAN, never
KEYS) plus celery's default queue; on RabbitMQ from the management API, in
the broker URL's vhost. celery's internal queues (pidbox mailboxes, reply
queues, celeryev.* event queues) are hidden unless --all.
"""

from celops.core import cli
from celops.core.rabbit import add_management_option


def build_parser():
    parser = cli.command_parser("cq-ls", __doc__, timeout=5.0)
    parser.add_argument("--all", action="store_true", help="include celery's internal queues")
    add_management_option(parser)
    parser.man_sections.append(("RECORDS", '{"type": "queue", "queue": NAME, "broker": REDACTED_URL}'))
    return parser


def run(ctx):
    broker = ctx.broker
    for name in cli_queue_names(ctx, broker):
        ctx.out.write({"type": "queue", "queue": name, "broker": broker.redacted_url})
    return 0


def cli_queue_names(ctx, broker):
    from celops.core.queues import existing_queues

    return existing_queues(broker, ctx.args.timeout, ctx.args.management_url, include_internal=ctx.args.all)


def main(argv=None, io=None):
    return cli.execute(build_parser, run, argv, io)
