"""Show the messages waiting in a queue without consuming them, one message record each.

Task messages of celery's protocol v2 (task and id in the headers, the body
[args, kwargs, embed]) and v1 (the body a dict) are decoded from JSON,
base64 and zlib/bzip2 compression. Pickled bodies are never unpickled:
the record says "body": "<pickle, N bytes>" and args/kwargs are null. A
message that cannot be decoded (headers that are not an object, a field of
the wrong type, a body that is not valid base64 or JSON) is still a message
record, with what could be read and "error" saying what is wrong; one that
is not a kombu message at all is an error record. The rest still print
(exit 0). A Redis key of the queue that is not a list is an error record
naming the key, the other lists are still read, and the exit status is 65.

On Redis the messages come from LRANGE over the queue's priority lists,
in the order workers would receive them (priority list 0 first, oldest
first within a list). On RabbitMQ they come from the management API's
"get messages" with ackmode reject_requeue_true (see CAVEATS).
"""

from celops.core import cli
from celops.core.queues import add_queue_argument
from celops.core.rabbit import add_management_option


def build_parser():
    parser = cli.command_parser("cq-peek", __doc__, timeout=5.0)
    add_queue_argument(parser, dest="queue", nargs=None, help="the queue to look into")
    parser.add_argument("-n", "--limit", type=cli.whole_number(0), default=100, metavar="N",
                        help="show at most N messages (default 100; 0 means all)")
    parser.add_argument("--offset", type=cli.whole_number(0), default=0, metavar="N",
                        help="skip the first N messages, in delivery order")
    add_management_option(parser)
    parser.man_sections += [
        ("CAVEATS",
         "RabbitMQ has no way to look without taking: the management API gets the first N messages and "
         "rejects them with requeue, so they go back to the queue, marked redelivered, and may come back "
         "in a different order behind messages that arrived meanwhile; a consumer may also receive one while "
         "it is out. Peek a busy RabbitMQ queue only when that reordering is acceptable. --offset on RabbitMQ "
         "still fetches (and requeues) the skipped messages; -n 0 there means every message ready when cq-peek "
         "starts (a passive queue_declare counts them), all taken and requeued at once. A header value the "
         "management API shows as \"undefined\" (empty) is null.\n\n"
         "On Redis the view is exact but not atomic: messages consumed or published while cq-peek reads "
         "may be missed or shown twice across a large peek."),
        ("EXAMPLES",
         "  cq-peek celery -n 5\n"
         "  cq-peek celery -n 0 | jq -r 'select(.task == \"app.tasks.resize\") | .uuid' | cctl revoke -\n"
         "  cq-peek video --offset 100 -n 10 | jq -c '[.uuid, .args]'"),
    ]
    return parser


def run(ctx):
    """Records as they decode; an unknown queue or a key that is not a list goes to QueueReport instead."""
    from celops.core.queues import BadKey, QueueReport, UnknownQueue

    args = ctx.args
    broker = ctx.broker
    report = QueueReport(ctx)
    try:
        for record in broker.transport.peek(args.queue, args.offset, args.limit or None, args.timeout,
                                            args.management_url, ctx.warn):
            if isinstance(record, BadKey):  # reported; the other priority lists are still read
                report.add(record)
            else:
                ctx.out.write(record)
    except UnknownQueue as unknown:
        report.add(unknown)
    return report.status()


def main(argv=None, io=None):
    return cli.execute(build_parser, run, argv, io)
