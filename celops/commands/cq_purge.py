"""Remove every waiting message from queues, after asking (or with -f).

The queues are -Q's, less -X's; without -Q, the -A app's queues, or else
every queue cq-ls lists (never celery's internal ones). On Redis all the
queue's priority lists go, in one transaction that also counts them, with
UNLINK (Redis 4 or later), which frees the messages in the background
instead of holding Redis up while a long list is freed; no other key is
touched (not the bindings, not the unacked hash, not another
application's keys). On RabbitMQ each queue is purged with queue.purge.

--task, --id and - (task ids on standard input) remove only the selected
messages, one message record each, oldest first, then the queue record
(each message removed atomically: one script per chunk of a priority list).
--drop N removes the next N messages in delivery order and --keep N all but
the next N; --newest turns either around (the last N of delivery order).
On Redis a trim is one script over all the queue's priority lists: atomic.

On a terminal cq-purge shows the per-queue counts and asks. Without a
terminal on standard input (a pipe, cron) it refuses unless -f/--force:
that is a usage error, exit 2; answering anything but y is the job's own
negative result, exit 1. --dry-run prints the records a purge would print,
exactly, and removes nothing.

A queue the broker does not know (Redis: no binding names it and none of
its lists exists; RabbitMQ: no such queue) is not purged but named in a
warning, "cq-purge: unknown queue 'NAME' (...)", and the exit status is 1.
On Redis a key that bears a queue's name but is not a list is never
removed: it gets an error record and exit 65. The other queues are purged.
"""

from celops.core import cli
from celops.core.exits import ExitStatus, UsageError
from celops.core.queues import add_queues_options
from celops.core.rabbit import add_management_option
from celops.core.selection import add_selection_options


def build_parser():
    parser = cli.command_parser("cq-purge", __doc__, timeout=5.0)
    add_queues_options(parser, 'purge these queues (repeatable; comma-separated; an empty name is an error, never '
                               '"all")', exclude=True)
    parser.add_argument("-f", "--force", action="store_true", help="purge without asking (needed without a TTY)")
    parser.add_argument("--dry-run", action="store_true", help="print what would be purged; remove nothing")
    parser.add_argument("--unacked", action="store_true",
                        help="Redis: also drop the queues' entries of the unacked hash (see UNACKED)")
    add_selection_options(parser, "remove")
    trims = parser.add_mutually_exclusive_group()
    trims.add_argument("--keep", type=cli.whole_number(0), metavar="N",
                       help="leave only the next N messages in delivery order (see DELIVERY ORDER)")
    trims.add_argument("--drop", type=cli.whole_number(0), metavar="N",
                       help="remove only the next N messages in delivery order")
    parser.add_argument("--newest", action="store_true",
                        help="--keep/--drop count from the other end: the last N in delivery order")
    add_management_option(parser)
    parser.man_sections += [
        ("UNACKED",
         "A purge removes waiting messages only. Messages a worker has already prefetched are not in the "
         "queue any more and survive it (celery issue 455): they run, or, if their worker dies, come back. "
         "On Redis kombu keeps a copy of each of them in the unacked hash so that it can restore them; "
         "--unacked also deletes the copies whose routing key names a purged queue, so that they never "
         "come back: it finds them with HSCAN and deletes them 1000 a command, after the lists, so that no "
         "command holds Redis up for long. Tasks already prefetched by a live worker still run: revoke them (cctl revoke) or "
         "restart the workers. RabbitMQ returns unacked messages to the queue when their consumer goes, "
         "and has no way to purge them: there --unacked is refused."),
        ("DELIVERY ORDER",
         "The order workers receive a queue's messages in, as kombu's Redis transport reads them: the "
         "priority lists in step order (the bare queue name, priority 0 to 2, first; then QUEUE\\x06\\x163, "
         "\\x166 and \\x169 by default), and within a list the oldest first. Example: a queue holding "
         "a1 a2 on list 0 and b1 on list 9 delivers a1 a2 b1; --drop 2 removes a1 a2, --drop 2 --newest "
         "removes a2 b1, --keep 1 leaves a1, --keep 1 --newest leaves b1. N = 0 and N beyond the length are "
         "allowed: --drop 0 and --keep beyond the length remove nothing, --keep 0 everything. "
         "On RabbitMQ the order is the queue's own."),
        ("RABBITMQ",
         "RabbitMQ gives messages only from the head of a queue: --drop N (without --newest) takes the next "
         "N (basic.get) and acknowledges them; --keep and --newest would have to take every message and put "
         "some back out of order, so they are refused (usage error). --task, --id and - take the messages "
         "one by one, acknowledge those selected and hold the others until the channel closes, when RabbitMQ "
         "puts them back (in their order, marked redelivered; see cq-move(1) RABBITMQ). Filtered --dry-run "
         "takes and puts back every message too."),
        ("EXAMPLES",
         "  cq-purge -Q video                 # asks first, on a terminal\n"
         "  cq-purge -Q video,thumbnails -f   # from cron or a script\n"
         "  cq-purge -X important --dry-run\n"
         "  cq-purge -A proj -f --unacked\n"
         "  cq-purge -Q video --id 4f1c2d3e-... -f            # one poison message\n"
         "  cq-purge -Q video --task 'app.tasks.thumb*' --dry-run\n"
         "  cq-purge -Q video --keep 1000 -f                  # only the next 1000 stay\n"
         "  cq-purge -Q video --drop 100 --newest -f          # the 100 last to be delivered go"),
    ]
    return parser


def run(ctx):
    from celops.core.queues import QueueReport
    from celops.core.selection import Selection

    args = ctx.args
    broker = ctx.broker
    trim = args.keep if args.keep is not None else args.drop
    selection = Selection.from_args(ctx) if args.task or args.id or args.ids_from_stdin else None
    _check_combinations(args, trim, selection)
    purger = broker.transport.purger(args.timeout, args.unacked, ctx.warn)
    queues = _selected_queues(ctx, broker, purger)
    if not queues:
        raise UsageError("no queues to purge")
    if selection is not None and selection.nothing:
        ctx.warn("no task ids given: nothing purged")
        return selection.status(ExitStatus.OK)
    report = QueueReport(ctx)
    if selection is not None or trim is not None:
        status = _purge_part(ctx, report, queues, selection, trim)
        return selection.status(status) if selection is not None else status
    if args.dry_run or not args.force:
        counts = report.sorted_out(purger.counts(queues))
        if args.dry_run:
            for record in counts:
                ctx.out.write({**record, "dry_run": True})
            return report.status()
        if not counts:
            return report.status()
        _ask(ctx, broker, counts)
        queues = [record["queue"] for record in counts]
    for record in report.sorted_out(purger.purge(queues)):
        ctx.out.write(record)
    return report.status()


def _check_combinations(args, trim, selection):
    if args.newest and trim is None:
        raise UsageError("--newest goes with --keep N or --drop N")
    if trim is not None and selection is not None:
        raise UsageError("--keep/--drop trim whole queues; they do not combine with --task, --id or -")
    if args.unacked and (trim is not None or selection is not None):
        raise UsageError("--unacked goes with a whole purge only, not with --keep, --drop, --task, --id or -")
    if args.ids_from_stdin and not (args.force or args.dry_run):
        raise UsageError("ids come on standard input, so there is no terminal to confirm on: give -f/--force "
                         "(or --dry-run to see what would go)")


def _purge_part(ctx, report, queues, selection, trim):
    """Remove the selected messages (their records first) or trim, queue by queue, after asking."""
    from celops.core.queues import BadKey, UnknownQueue

    args = ctx.args
    transport = ctx.broker.transport
    mark = {"dry_run": True} if args.dry_run else {}
    if not args.dry_run and not args.force:
        _ask(ctx, ctx.broker, [_partial_count(ctx, queue, selection, trim) for queue in queues])
    for queue in queues:
        try:
            if selection is None:
                record = transport.trim(queue, trim, args.keep is not None, args.newest, args.dry_run,
                                        args.timeout, ctx.warn)
            else:
                purged = 0
                encode = ctx.out.encode
                for record in transport.remove(queue, selection, args.dry_run, args.timeout, ctx.warn,
                                               lambda record: encode({**record, **mark})):
                    if isinstance(record, BadKey):
                        break
                    ctx.out.write_encoded(record)
                    purged += 1
                else:
                    record = {"type": "queue", "queue": queue, "purged": purged}
        except UnknownQueue as unknown:
            report.add(unknown)
            continue
        if isinstance(record, BadKey):
            report.add(record)
        else:
            ctx.out.write({**record, **mark})
    return report.status()


def _partial_count(ctx, queue, selection, trim):
    """The consent prompt's count of one queue: what a dry run would remove ("up to" when not exact)."""
    from celops.core.queues import BadKey, UnknownQueue

    args = ctx.args
    transport = ctx.broker.transport
    try:
        if selection is None:
            found = transport.trim(queue, trim, args.keep is not None, args.newest, True, args.timeout, ctx.warn)
            return found if isinstance(found, BadKey) else {**found, "exact": True}
        count, exact = transport.count(queue, selection, args.timeout, ctx.warn)
    except UnknownQueue:
        return {"type": "queue", "queue": queue, "purged": 0, "exact": True}
    return {"type": "queue", "queue": queue, "purged": count, "exact": exact}


def _selected_queues(ctx, broker, purger):
    """-Q's queues (None when -Q was not given at all: never when it was given empty), less -X's."""
    excluded = set(ctx.args.exclude_queues)
    names = ctx.args.queues if ctx.args.queues is not None else broker.queues or purger.existing(ctx.args.management_url)
    return [name for name in dict.fromkeys(names) if name not in excluded]


def _ask(ctx, broker, counts):
    """Show the counts and ask on the terminal (celops.core.consent: no terminal is exit 2, a "no" exit 1)."""
    from celops.core.consent import confirm

    counts = [record for record in counts if isinstance(record, dict)]  # a bad key is reported when reached
    total = sum(record["purged"] + record.get("unacked_purged", 0) for record in counts)
    lines = [f"about to purge from {broker.redacted_url}:"]
    for record in counts:
        extra = f" and {record['unacked_purged']} unacked" if "unacked_purged" in record else ""
        up_to = "" if record.get("exact", True) else "up to "
        lines.append(f"  {record['queue']}: {up_to}{record['purged']} messages{extra}")
    confirm(ctx, "purge", "purged", lines, f"purge {total} messages from {len(counts)} queue(s)?")


def main(argv=None, io=None):
    return cli.execute(build_parser, run, argv, io)
