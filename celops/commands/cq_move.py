"""Move waiting messages to another queue or another broker, after asking (or with -f).

The messages of the -Q queues (all the priority lists of a Redis queue) go,
in delivery order, to --to QUEUE on the same broker, or to --to-broker URL
(Redis to RabbitMQ and back, what celery migrate does; the same queue names
unless --to says otherwise). --task, --id, - (task ids on standard input)
and -n narrow what moves. A moved message keeps its body, headers and
properties (priority included), so the worker that receives it runs the
same task: same id, arguments, eta, retries, root and parent ids. Its
routing key and delivery info name the destination queue. The envelopes
are written by kombu itself (on Redis the source's own, re-addressed and
written out with kombu's JSON encoder).

No message is lost. Within one Redis each message moves atomically, in one
script that removes it from the source list and pushes it onto the
destination's list of the same priority (or, for a run of the oldest
messages of a list that nothing touched since cq-move read it, in one
transaction for the whole run). Between brokers, and on RabbitMQ,
delivery is at least once: a message is published to the destination and
confirmed there (RabbitMQ publisher confirms; Redis: the LPUSH returned)
before it is removed from the source, so a crash in between leaves it in
both queues, never in neither; run cq-move again to move what is left.

On a terminal cq-move shows how many messages would move and asks. Without
a terminal on standard input (a pipe, cron) it refuses unless -f/--force:
that is a usage error, exit 2; answering anything but y is the job's own
negative result, exit 1. --dry-run prints the records a move would print,
exactly (each with "dry_run":true), and moves nothing. With ids on standard
input there is no terminal to ask on: give -f or --dry-run.

A source queue the broker does not know is named in a warning, "cq-move:
unknown queue 'NAME' (...)", and the exit status is 1; a Redis key of it
that is not a list is an error record and exit 65. The other queues move.
"""

from celops.core import cli
from celops.core.exits import ExitStatus, UsageError
from celops.core.queues import add_queues_options
from celops.core.selection import add_selection_options


def build_parser():
    parser = cli.command_parser("cq-move", __doc__, timeout=5.0)
    add_queues_options(parser, "move from these queues (repeatable; comma-separated; default: the -A app's queues)")
    cli.complete_with(parser.add_argument(
        "--to", type=cli.name("queue name"), metavar="QUEUE",
        help="the destination queue (default with --to-broker: each source queue's own name)"), cli.QUEUE_NAMES)
    parser.add_argument("--to-broker", metavar="URL",
                        help="move to this broker (any URL -b takes) instead of the source broker")
    add_selection_options(parser, "move")
    parser.add_argument("-n", "--limit", type=cli.whole_number(1), metavar="N",
                        help="move at most N messages in all, the first in delivery order")
    parser.add_argument("-f", "--force", action="store_true", help="move without asking (needed without a TTY)")
    parser.add_argument("--dry-run", action="store_true", help="print what would move; move nothing")
    parser.man_sections += [
        ("DELIVERY ORDER",
         "Messages move in the order workers would receive them, and keep it: on Redis priority list 0 (the "
         "bare queue name) first, then the lists of steps 3, 6 and 9 (kombu's priority_steps), oldest first "
         "within a list; each goes onto the destination's list of the same step, behind what waits there. "
         "-n N takes the first N of that order."),
        ("RABBITMQ",
         "RabbitMQ gives messages only from the head of a queue. cq-move takes them one by one (basic.get), at "
         "most as many as were ready when it started; those selected are published to the destination, "
         "confirmed, then acknowledged; the others stay unacknowledged until cq-move closes its channel, "
         "when RabbitMQ puts them back. Observed with RabbitMQ 3.12: they come back in their original order, "
         "ahead of messages that arrived meanwhile, with the redelivered flag set (a worker sees "
         "delivery_info.redelivered true; celery runs them as usual). A consumer on the source queue may "
         "receive messages meanwhile, and cannot receive those cq-move holds. The destination queue must "
         "exist (RabbitMQ drops what is published to a queue it lacks): a missing one stops cq-move before it takes anything (exit 1). "
         "A --dry-run also takes the messages and puts them all back, which sets their redelivered flag."),
        ("CAVEATS",
         "On Redis a worker consuming the source queue while cq-move runs takes what it takes: those "
         "messages are neither moved nor reported, and cq-move may miss a few others (run it again). "
         "Task ids read from `cctl reserved --each` or `cctl active --each` are of tasks a worker already "
         "holds: they are not waiting in a queue and nothing matches them. "
         "A message that is not a kombu envelope moves within one Redis as it is, and stays (named in a "
         "warning) when moving to another broker. "
         "On Redis a second cq-move process runs beside the first while messages move: a helper that "
         "decodes part of each chunk on another core. It talks to no broker and writes nothing; if it dies, "
         "cq-move does its share itself. cq-purge's --task, --id and - use it too."),
        ("EXAMPLES",
         "  cq-move -Q video --to video-slow --task 'app.tasks.transcode*'\n"
         "  cq-peek video -n 0 | jq -c 'select(.retries > 3)' | cq-move -Q video --to quarantine -f -\n"
         "  cq-move -Q celery -b redis://old:6379/0 --to-broker amqp://guest:guest@new:5672// -f\n"
         "  cq-move -Q celery --to celery-later -n 1000 --dry-run"),
    ]
    return parser


def run(ctx):
    from celops.core.broker import Broker
    from celops.core.queues import QueueReport
    from celops.core.selection import Selection

    args = ctx.args
    broker = ctx.broker
    if args.to is None and args.to_broker is None:
        raise UsageError("where to? give --to QUEUE, --to-broker URL, or both")
    if args.ids_from_stdin and not (args.force or args.dry_run):
        raise UsageError("ids come on standard input, so there is no terminal to confirm on: give -f/--force "
                         "(or --dry-run to see what would move)")
    destination = Broker(args.to_broker, "--to-broker") if args.to_broker is not None else None
    queues = _source_queues(args, broker)
    selection = Selection.from_args(ctx, args.limit)
    if selection.nothing:
        ctx.warn("no task ids given: nothing moved")
        return selection.status(ExitStatus.OK)
    target = destination or broker
    for queue in queues:
        target.transport.check_destination(args.to or queue, args.timeout, ctx.warn)
    if not args.force and not args.dry_run:
        _ask(ctx, broker, target, queues, selection)
    report = QueueReport(ctx)
    mark = {"dry_run": True} if args.dry_run else {}
    for queue in queues:
        moved = _move_queue(ctx, report, queue, selection, destination, mark)
        if moved is not None:
            ctx.out.write({"type": "queue", "queue": queue, "moved": moved, **mark})
        if selection.limit is not None:
            selection.limit -= moved or 0
            if selection.limit <= 0:
                break
    return selection.status(report.status())


def _source_queues(args, broker):
    """-Q's queues, else the -A app's; never none (that is a usage error), never the destination itself."""
    queues = list(dict.fromkeys(args.queues if args.queues is not None else broker.queues or []))
    if not queues:
        raise UsageError("which queues? give -Q QUEUE (or -A with an app that declares its queues)")
    if args.to_broker is None:
        queues = [queue for queue in queues if queue != args.to] if args.queues is None else queues
        if args.to in queues:
            raise UsageError(f"--to {args.to!r} is also a source queue: nothing would move")
    return queues


def _move_queue(ctx, report, queue, selection, destination, mark):
    """Write the records of one source queue's moved messages; how many moved, or None when it was reported."""
    from celops.core.queues import BadKey, UnknownQueue

    args = ctx.args
    encode, write = ctx.out.encode, ctx.out.write_encoded
    moved = 0
    try:
        # each record is encoded as its message is read, while it is fresh in the cache
        for line in ctx.broker.transport.move(queue, args.to or queue, selection, destination, args.dry_run,
                                              args.timeout, ctx.warn, lambda record: encode({**record, **mark})
                                              if mark else encode(record)):
            if isinstance(line, BadKey):
                report.add(line)
                return None
            write(line)
            moved += 1
    except UnknownQueue as unknown:
        report.add(unknown)
        return None
    return moved


def _ask(ctx, broker, target, queues, selection):
    """Count what would move (a dry run of each queue) and ask on the terminal (celops.core.consent)."""
    from celops.core.consent import confirm
    from celops.core.queues import UnknownQueue

    args = ctx.args
    lines = [f"about to move from {broker.redacted_url} to {target.redacted_url} ({selection.describe()}):"]
    total = 0
    for queue in queues:
        try:
            count, exact = broker.transport.count(queue, selection, args.timeout, ctx.warn)
        except UnknownQueue:
            continue  # reported when the move reaches it
        total += count
        lines.append(f"  {queue} -> {args.to or queue}: {'' if exact else 'up to '}{count} messages")
    confirm(ctx, "move", "moved", lines, f"move {total} messages?")


def main(argv=None, io=None):
    return cli.execute(build_parser, run, argv, io)
