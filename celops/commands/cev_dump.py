"""Write the Celery event stream as NDJSON, one event per line, filtered and without silent loss.

Every event the workers send comes out with all its fields plus
local_received; task.multi batches of prefork workers are unpacked in order.
A reader thread keeps the broker drained into an in-memory backlog (--buffer),
so a slow pipe downstream does not make the broker drop the subscription.
When events are lost anyway (broker restart, output-buffer limit, backlog
full) a celops-gap record says so and the stream goes on.

Workers must send events (celery worker -E, or --enable-events here).
"""

import fnmatch
import re
import time

from celops.core import cli
from celops.core.events import CONNECT_TIMEOUT_HELP, DEFAULT_CONNECT_TIMEOUT, add_source_options

from celops.records import ERROR, GAP
TASK_NAMES_KEPT = 100_000  # at most, uuid -> task name, for --task on events that do not carry the name
HEARTBEAT = "worker-heartbeat"
# The event types celery sends (celery.events.state and the worker's heartbeat); apps may send their own.
EVENT_TYPES = ("task-sent", "task-received", "task-started", "task-succeeded", "task-failed", "task-retried",
               "task-revoked", "task-rejected", "worker-online", "worker-heartbeat", "worker-offline")


def build_parser():
    parser = cli.command_parser(
        "cev-dump", __doc__, timeout=DEFAULT_CONNECT_TIMEOUT, timeout_help=CONNECT_TIMEOUT_HELP)
    filters = parser.add_argument_group("filters", "they select events; gap and error records always pass")
    cli.complete_with(filters.add_argument(
        "--type", action="extend", type=cli.name_list("event type glob"), metavar="GLOB",
        help="only events of these types: task-failed, task-*; repeatable or comma-separated; a type or glob "
             "that matches none of celery's event types is warned about (custom events still match)"),
        cli.EVENT_TYPE_NAMES)
    filters.add_argument("--task", action="extend", type=cli.name_list("task name glob"), metavar="GLOB",
                         help="only task events of tasks whose name matches; the name comes with task-received or "
                              f"task-sent and is remembered by uuid for the latest {TASK_NAMES_KEPT // 2:,} to "
                              f"{TASK_NAMES_KEPT:,} tasks; repeatable")
    cli.complete_with(filters.add_argument("--hostname", action="extend", type=cli.name_list("hostname glob"), metavar="GLOB",
                                           help="only events of workers whose hostname matches; repeatable"),
                      cli.WORKER_NAMES)
    filters.add_argument("--no-heartbeats", action="store_true", help="leave out worker-heartbeat events")
    stop = parser.add_argument_group("stopping")
    stop.add_argument("--limit", type=cli.whole_number(1, cli.MAX_NUMBER), metavar="N", help="stop after writing N records")
    stop.add_argument("--duration", type=cli.positive_float, metavar="SECONDS", help="stop after this long")
    stop.add_argument("--idle", type=cli.positive_float, metavar="SECONDS",
                      help="stop after this many seconds without writing a record (default: never)")
    parser.add_argument("--on-gap", choices=("record", "warn", "exit"), default="record",
                        help="when events were lost: write a celops-gap record (default), warn on stderr, "
                             "or warn and exit 1")
    add_source_options(parser)
    parser.man_sections[:0] = [
        ("EXAMPLES", "  cev-dump --type task-failed | jq -r .exception\n"
                     "  cev-dump --task 'proj.billing.*' --duration 60 > billing.ndjson\n"
                     "  cev-dump --queue celops-audit --idle 5 >> events.ndjson   # RabbitMQ, from cron"),
        ("CAVEATS", "On RabbitMQ without --queue, celery's 5 s message TTL drops events the broker holds for a "
                    "stalled reader; no gap record can say so. Use --queue, or --ttl. "
                    "With --queue, events are delivered at least once: a message is acknowledged only after all "
                    "its events were written, so a run that ends inside a task.multi batch (--limit, a kill) "
                    "writes the first events of that batch again on the next run; deduplicate on hostname, "
                    "type, timestamp and uuid if that matters.\n\n"
                    "Through Redis Sentinel, a promotion is read without a hole: the demoted master goes on "
                    "answering for about 10 s and the workers go on publishing there until it drops them, so "
                    "cev-dump subscribes on the new master at once and reads the old one until it lets go; a "
                    "celops-gap record with dropped 0 marks the move.\n\n"
                    "--queue with a failover list of independent RabbitMQ nodes (not one cluster): the queue lives "
                    "on one node. cev-dump declares it on the node it lands on, but until then that node drops "
                    "the events it is sent, so declare it on every node of the list first (cev-dump --queue NAME "
                    "--duration 1 -b URL, once per node), or use a cluster with quorum queues. Then no event "
                    "published on the node cev-dump reads is lost, including while it switches (a celops-gap "
                    "record with from and to marks the switch). The events the lost node still held (not yet "
                    "delivered, or not yet acknowledged) are not: celery sends events as transient messages, "
                    "which a node drops when it stops, and a node that stays up keeps them until cev-dump reads "
                    "it again."),
    ]
    return parser


class Matcher:
    """Globs compiled once, answers cached per value (types and hostnames are few)."""

    def __init__(self, globs):
        self._match = re.compile("|".join(fnmatch.translate(glob) for glob in globs)).match
        self._seen = {}

    def __call__(self, value):
        if value is None:
            return False
        answer = self._seen.get(value)
        if answer is None:
            answer = self._seen[value] = bool(self._match(value))
            if len(self._seen) > 10_000:
                self._seen.clear()
        return answer


class TaskNames:
    """uuid -> task name from task-received/task-sent, so later events of the task carry ``name`` too.

    Bounded by two generations of ``size / 2``: when the newer one is full the
    older one goes as a whole. Evicting the oldest key of one big dict instead
    (``del d[next(iter(d))]``) gets slower with every eviction, as the
    iterator steps over ever more deleted slots.
    """

    def __init__(self, size=TASK_NAMES_KEPT):
        self.generation_size = max(size // 2, 1)
        self.newer, self.older = {}, {}

    def __len__(self):
        return len(self.newer) + len(self.older)

    def fill(self, event):
        uuid = event.get("uuid")
        if uuid is None:
            return
        name = event.get("name")
        if name is None:
            name = self.newer.get(uuid) or self.older.get(uuid)
            if name is not None:
                event["name"] = name
        elif uuid not in self.newer:
            self.newer[uuid] = name
            if len(self.newer) >= self.generation_size:
                self.older, self.newer = self.newer, {}


def unknown_types(globs):
    """``(glob, suggestion)`` for each --type glob that matches none of celery's event types (a typo, or custom)."""
    import difflib

    for glob in globs:
        if not fnmatch.filter(EVENT_TYPES, glob):
            close = difflib.get_close_matches(glob, EVENT_TYPES, n=1)
            yield glob, close[0] if close else None


def event_filter(args):
    """A predicate on event records for the filter options, or None when nothing filters."""
    tests = []
    if args.type:
        wanted = Matcher(args.type)
        tests.append(lambda event: wanted(event.get("type")))
    if args.no_heartbeats:
        tests.append(lambda event: event.get("type") != HEARTBEAT)
    if args.hostname:
        hosts = Matcher(args.hostname)
        tests.append(lambda event: hosts(event.get("hostname")))
    if args.task:
        tasks = Matcher(args.task)
        tests.append(lambda event: tasks(event.get("name")))
    if not tests:
        return None
    return lambda event: all(test(event) for test in tests)


def run(ctx):
    from celops.core.events import EventSource
    from celops.core.ndjson import dumps

    args = ctx.args
    for glob, suggestion in unknown_types(args.type or ()):
        hint = f"; did you mean {suggestion}?" if suggestion else "; only custom events can match it"
        ctx.warn(f"--type {glob} matches none of celery's event types{hint}")
    keep = event_filter(args)
    fill_name = TaskNames().fill
    write = ctx.out.write_encoded
    flush = ctx.out.flush
    left = args.limit or -1  # counts down to 0; -1 never gets there
    idle = args.idle
    deadline = time.monotonic() + args.duration if args.duration else None
    last_written = time.monotonic()
    with EventSource.from_args(ctx.broker, args) as source:
        get_batch = source.get_batch
        while True:
            batch = get_batch(0)
            if not batch:  # caught up: show what we have, then wait for more or for a limit
                flush()
                now = time.monotonic()
                waits = [t - now for t in (deadline, last_written + idle if idle else None) if t is not None]
                batch = get_batch(max(min(waits), 0) if waits else None)
                if not batch:
                    return 0
            if deadline is not None and time.monotonic() >= deadline:
                return 0
            lines = []
            for record in batch:
                kind = record.get("type")
                if kind == GAP:
                    if args.on_gap != "record":
                        ctx.warn(gap_warning(record))
                        if args.on_gap == "exit" and record["dropped"] != 0:  # 0: a switch, nothing lost
                            write(b"".join(lines))
                            return 1
                        continue
                elif kind != ERROR:
                    fill_name(record)
                    if keep is not None and not keep(record):
                        continue
                lines.append(dumps(record))
                left -= 1
                if not left:
                    write(b"".join(lines))
                    return 0
            if lines:
                write(b"".join(lines))
                if idle:
                    last_written = time.monotonic()
            elif idle and time.monotonic() - last_written >= idle:
                return 0


def gap_warning(gap):
    if gap["dropped"] == 0:
        return f"moved from {gap['from']} to {gap['to']}, nothing missed: {gap['reason']}"
    dropped = "unknown number" if gap["dropped"] is None else gap["dropped"]
    return (f"events lost ({dropped}) between {gap['since']:.3f} and {gap['until']:.3f}: "
            f"{gap['reason']}")


def main(argv=None, io=None):
    return cli.execute(build_parser, run, argv, io)
