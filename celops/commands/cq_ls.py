"""List the queues that exist on the broker, one queue record per line.

Only queues that exist are listed: on Redis those kombu's binding sets
name (found with SCAN, COUNT 1000 a call, never KEYS, so that no call holds
Redis up for long), on RabbitMQ those the management API shows in the
broker URL's vhost. Not celery's default queue, nor an -A app's queue, when
the broker does not have it. celery's internal queues (pidbox mailboxes,
reply queues, celeryev.* event queues) are hidden unless --all.

On Redis without -A, the separator of the binding members is inferred from
them, and said on stderr when it is not kombu's default (see cq-len(1)).
"""

from celops.core import cli
from celops.core.rabbit import add_management_option


def build_parser():
    parser = cli.command_parser("cq-ls", __doc__, timeout=5.0)
    parser.add_argument("--all", action="store_true", help="include celery's internal queues")
    add_management_option(parser)
    return parser


def run(ctx):
    broker = ctx.broker
    for name in cli_queue_names(ctx, broker):
        ctx.out.write({"type": "queue", "queue": name, "broker": broker.redacted_url})
    return 0


def cli_queue_names(ctx, broker):
    from celops.core.queues import existing_queues

    return existing_queues(broker, ctx.args.timeout, ctx.args.management_url, include_internal=ctx.args.all,
                           warn=ctx.warn)


def main(argv=None, io=None):
    return cli.execute(build_parser, run, argv, io)
