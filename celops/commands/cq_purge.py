"""Remove every waiting message from queues, after asking (or with -f).

The queues are -Q's, less -X's; without -Q, the -A app's queues, or else
every queue cq-ls lists (never celery's internal ones). On Redis all the
queue's priority lists go, in one transaction that also counts them, with
UNLINK (Redis 4 or later), which frees the messages in the background
instead of holding Redis up while a long list is freed; no other key is
touched (not the bindings, not the unacked hash, not another
application's keys). On RabbitMQ each queue is purged with queue.purge.

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
from celops.core.exits import UsageError

from celops.core.rabbit import add_management_option


def build_parser():
    parser = cli.command_parser("cq-purge", __doc__, timeout=5.0)
    cli.complete_with(parser.add_argument(
        "-Q", "--queues", action="extend", type=cli.name_list("queue name"), metavar="QUEUE[,QUEUE...]",
        help="purge these queues (repeatable; comma-separated; an empty name is an error, never \"all\")"),
        cli.QUEUE_NAMES)
    cli.complete_with(parser.add_argument(
        "-X", "--exclude-queues", action="extend", type=cli.name_list("queue name"), default=[],
        metavar="QUEUE[,QUEUE...]", help="but not these (repeatable; comma-separated)"), cli.QUEUE_NAMES)
    parser.add_argument("-f", "--force", action="store_true", help="purge without asking (needed without a TTY)")
    parser.add_argument("--dry-run", action="store_true", help="print what would be purged; remove nothing")
    parser.add_argument("--unacked", action="store_true",
                        help="Redis: also drop the queues' entries of the unacked hash (see UNACKED)")
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
        ("EXAMPLES",
         "  cq-purge -Q video                 # asks first, on a terminal\n"
         "  cq-purge -Q video,thumbnails -f   # from cron or a script\n"
         "  cq-purge -X important --dry-run\n"
         "  cq-purge -A proj -f --unacked"),
    ]
    return parser


def run(ctx):
    from celops.core.queues import QueueReport

    args = ctx.args
    broker = ctx.broker
    purger = broker.transport.purger(args.timeout, args.unacked, ctx.warn)
    queues = _selected_queues(ctx, broker, purger)
    if not queues:
        raise UsageError("no queues to purge")
    report = QueueReport(ctx)
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


def _selected_queues(ctx, broker, purger):
    """-Q's queues (None when -Q was not given at all: never when it was given empty), less -X's."""
    excluded = set(ctx.args.exclude_queues)
    names = ctx.args.queues if ctx.args.queues is not None else broker.queues or purger.existing(ctx.args.management_url)
    return [name for name in dict.fromkeys(names) if name not in excluded]


def _ask(ctx, broker, counts):
    """Show the counts and ask on the terminal (celops.core.consent: no terminal is exit 2, a "no" exit 1)."""
    from celops.core.consent import confirm

    total = sum(record["purged"] + record.get("unacked_purged", 0) for record in counts)
    lines = [f"about to purge from {broker.redacted_url}:"]
    for record in counts:
        extra = f" and {record['unacked_purged']} unacked" if "unacked_purged" in record else ""
        lines.append(f"  {record['queue']}: {record['purged']} messages{extra}")
    confirm(ctx, "purge", "purged", lines, f"purge {total} messages from {len(counts)} queue(s)?")


def main(argv=None, io=None):
    return cli.execute(build_parser, run, argv, io)
