"""Remove every waiting message from queues, after asking (or with -f).

The queues are -Q's, less -X's; without -Q, the -A app's queues, or else
every queue cq-ls lists (never celery's internal ones). On Redis all the
queue's priority lists go, in one transaction that also counts them; no
other key is touched (not the bindings, not the unacked hash, not another
application's keys). On RabbitMQ each queue is purged with queue.purge.

On a terminal cq-purge shows the per-queue counts and asks. Without a
terminal on standard input (a pipe, cron) it refuses unless -f/--force:
that is a usage error, exit 2. --dry-run prints the records a purge would
print, exactly, and removes nothing.
"""

from celops.core import cli
from celops.core.exits import CelopsError, UsageError
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
        ("RECORDS",
         '  {"type":"queue","queue":NAME,"purged":N}\n\n'
         'One per queue; with --unacked also "unacked_purged":N; '
         'with --dry-run also "dry_run":true, and the counts are what would go.'),
        ("UNACKED",
         "A purge removes waiting messages only. Messages a worker has already prefetched are not in the "
         "queue any more and survive it (celery issue 455): they run, or, if their worker dies, come back. "
         "On Redis kombu keeps a copy of each of them in the unacked hash so that it can restore them; "
         "--unacked also deletes the copies whose routing key names a purged queue, so that they never "
         "come back. Tasks already prefetched by a live worker still run: revoke them (cctl revoke) or "
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
    args = ctx.args
    broker = ctx.broker
    if args.unacked and broker.transport != "redis":
        raise UsageError("--unacked is for Redis; RabbitMQ requeues unacked messages itself (see UNACKED)")
    purger = RedisPurger(ctx, broker) if broker.transport == "redis" else RabbitPurger(ctx, broker)
    queues = _selected_queues(ctx, broker, purger)
    if not queues:
        raise UsageError("no queues to purge")
    if args.dry_run:
        for record in purger.counts(queues):
            ctx.out.write({**record, "dry_run": True})
        return 0
    if not args.force:
        _ask(ctx, broker, purger.counts(queues))
    for record in purger.purge(queues):
        ctx.out.write(record)
    return 0


def _selected_queues(ctx, broker, purger):
    """-Q's queues (None when -Q was not given at all: never when it was given empty), less -X's."""
    excluded = set(ctx.args.exclude_queues)
    names = ctx.args.queues if ctx.args.queues is not None else broker.queues or purger.existing()
    return [name for name in dict.fromkeys(names) if name not in excluded]


def _ask(ctx, broker, counts):
    """Show the counts and ask on the terminal; without one, refuse (exit 2)."""
    from celops.core.consent import confirm

    total = sum(record["purged"] + record.get("unacked_purged", 0) for record in counts)
    lines = [f"about to purge from {broker.redacted_url}:"]
    for record in counts:
        extra = f" and {record['unacked_purged']} unacked" if "unacked_purged" in record else ""
        lines.append(f"  {record['queue']}: {record['purged']} messages{extra}")
    confirm(ctx, "purge", "purged", lines, f"purge {total} messages from {len(counts)} queue(s)?")


class RedisPurger:
    """Counts and purges Redis queues: their priority lists and, if asked, their unacked entries."""

    def __init__(self, ctx, broker):
        from celops.core.queues import redis_client

        self.broker = broker
        self.timeout = ctx.args.timeout
        self.client = redis_client(broker, self.timeout)
        self.with_unacked = ctx.args.unacked

    def existing(self):
        from celops.core.queues import existing_queues

        return existing_queues(self.broker, self.timeout, client=self.client)

    def _keys(self, queues):
        return [key for queue in queues for _, key in self.broker.priority_keys(queue)]

    def _lengths(self, keys):
        """LLEN of every key, in one pipeline; a key that is not a list stops everything."""
        from celops.core.queues import checked_length

        return [checked_length(key, length) for key, length in zip(keys, self.client.pipeline(
            ("LLEN", key) for key in keys))]

    def counts(self, queues):
        keys = self._keys(queues)
        return self._records(queues, self._lengths(keys), self._unacked_tags(queues) if self.with_unacked else None)

    def purge(self, queues):
        """LLEN and DEL every priority list in one MULTI/EXEC, so the counts are exactly what went."""
        from celops.core.queues import unacked_key

        tags = self._unacked_tags(queues) if self.with_unacked else None
        keys = self._keys(queues)
        self._lengths(keys)  # never DEL a key of another type that happens to bear a queue's name
        commands = [command for key in keys for command in (("LLEN", key), ("DEL", key))]
        every_tag = [tag for queue_tags in (tags or {}).values() for tag in queue_tags]
        if every_tag:
            index_key = self.broker.key(self.broker.transport_options.get("unacked_index_key", "unacked_index"))
            commands += [("HDEL", unacked_key(self.broker), *every_tag), ("ZREM", index_key, *every_tag)]
        *_, replies = self.client.pipeline([("MULTI",), *commands, ("EXEC",)])
        if not isinstance(replies, list):
            raise CelopsError(f"purge transaction failed: {replies}")
        return self._records(queues, replies[0:2 * len(keys):2], tags)

    def _records(self, queues, lengths, tags):
        lengths = iter(lengths)
        records = []
        for queue in queues:
            record = {"type": "queue", "queue": queue,
                      "purged": sum(next(lengths) for _ in self.broker.priority_steps)}
            if tags is not None:
                record["unacked_purged"] = len(tags.get(queue, ()))
            records.append(record)
        return records

    def _unacked_tags(self, queues):
        """``{queue: [delivery tags]}`` of the unacked entries routed to each queue (HSCAN)."""
        import orjson

        from celops.core.queues import unacked_key

        wanted = set(queues)
        tags = {}
        entries = self.client.scan("HSCAN", unacked_key(self.broker))
        for tag, value in zip(entries, entries):
            try:
                routing_key = orjson.loads(value)[2]
            except (orjson.JSONDecodeError, IndexError, KeyError, TypeError):
                continue
            if routing_key in wanted:
                tags.setdefault(routing_key, []).append(tag)
        return tags


class RabbitPurger:
    """Counts (ready messages, by passive declare) and purges RabbitMQ queues with queue.purge."""

    def __init__(self, ctx, broker):
        self.ctx = ctx
        self.broker = broker
        self.connection = broker.kombu(ctx.args.timeout)

    def existing(self):
        from celops.core.queues import existing_queues

        return existing_queues(self.broker, self.ctx.args.timeout, self.ctx.args.management_url)

    def counts(self, queues):
        from celops.core.queues import declare_passive

        return [{"type": "queue", "queue": queue, "purged": declare_passive(self.connection, queue, self.ctx.warn)[0]}
                for queue in queues]

    def purge(self, queues):
        from celops.core.queues import on_queue

        for queue in queues:
            purged = on_queue(self.connection, queue, self.ctx.warn, 0, lambda channel: channel.queue_purge(queue))
            yield {"type": "queue", "queue": queue, "purged": purged or 0}


def main(argv=None, io=None):
    return cli.execute(build_parser, run, argv, io)
