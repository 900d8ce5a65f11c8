"""Send tasks by name, without their code: one task, or one per input record, printing a sent record each.

The messages are built and published by celery itself (app.send_task), on
one producer connection. -b URL alone is enough (a bare Celery app on that
broker); -A app adds its routing (task_routes, queues) and serializer.

csend - reads records from standard input: cres result records (re-running
stored tasks), cq-peek message records (sending queued messages again) or
hand-written NDJSON. Each record gives the task name (name, else task), args,
kwargs, and its queue and priority unless -Q or --priority say otherwise.
A record without a task name or without args is refused (PROG: FILE:LINE:
reason, exit 65, the others are still sent): a task is never sent with
arguments it did not have. "args": [] is an explicit empty list and is
sent; kwargs may be absent (then {}). cres records have args only when the
workers store them (result_extended = True).

--wait waits for each sent task's result in the result backend (--backend
URL, $CELOPS_RESULT_BACKEND or the -A app's) and prints it as a cres result
record; -t bounds the whole wait: tasks not done by then are printed as they
stand, and the exit status is 1.
"""

import itertools
import time

from celops.core import cli
from celops.core.exits import ExitStatus, UsageError

BATCH = 500  # tasks per broker round trip (where the transport batches)


def _json_of(kind):
    """An argparse type for --args (a JSON list) and --kwargs (a JSON object)."""
    import argparse

    def parse(text):
        import orjson

        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise argparse.ArgumentTypeError(f"not JSON: {text!r} ({exc})") from None
        if not isinstance(value, kind):
            raise argparse.ArgumentTypeError(f"not a JSON {'list' if kind is list else 'object'}: {text!r}")
        return value

    return parse


def _iso_time(text):
    import argparse
    import datetime

    try:
        datetime.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return text


def _expiry(text):
    """--expires: seconds from now, or an ISO 8601 time."""
    import argparse

    try:
        return cli.positive_float(text)
    except argparse.ArgumentTypeError:
        return _iso_time(text)


def build_parser():
    from celops.core.results import add_backend_options

    parser = cli.command_parser("csend", __doc__, timeout=10.0,
                                timeout_help="give up on the broker after this long; with --wait, on the "
                                             "results too (default 10)")
    parser.add_argument("task", metavar="NAME", help="the task name, e.g. proj.tasks.add; - reads records")
    message = parser.add_argument_group("the message")
    message.add_argument("--args", type=_json_of(list), metavar="JSON", help="positional arguments, a JSON list")
    message.add_argument("--kwargs", type=_json_of(dict), metavar="JSON",
                         help="keyword arguments, a JSON object")
    cli.complete_with(message.add_argument("-Q", "--queue", type=cli.name("queue name"), metavar="QUEUE",
                                           help="send to this queue (default: the app's routing, else celery)"),
                      cli.QUEUE_NAMES)
    when = message.add_mutually_exclusive_group()
    when.add_argument("--countdown", type=cli.positive_float, metavar="SECONDS", help="run no sooner than this")
    when.add_argument("--eta", type=_iso_time, metavar="ISO", help="run no sooner than this time (ISO 8601)")
    message.add_argument("--expires", type=_expiry, metavar="SECONDS|ISO",
                         help="discard the task if it has not started by then")
    message.add_argument("--priority", type=cli.whole_number(0, 255), metavar="N", help="message priority")
    message.add_argument("--header", action="append", type=cli.key_value, default=[], metavar="KEY=VALUE",
                         help="an extra message header (repeatable)")
    sending = parser.add_argument_group("sending")
    sending.add_argument("--rate", type=cli.positive_rate, metavar="RATE",
                         help="at most this many tasks per second (10/s, 600/m, 1000/h)")
    sending.add_argument("--dry-run", action="store_true", help="print what would be sent; send nothing")
    sending.add_argument("--wait", action="store_true", help="wait for each result and print it as a cres record")
    add_backend_options(parser)
    parser.man_sections += [
        ("INPUT", cli.RECORDS_INPUT.replace(" (--strict stops at the first)", "")),
        ("EXAMPLES",
         "  csend proj.tasks.add --args '[2, 2]'\n"
         "  csend -b redis://broker:6379/0 proj.tasks.report --kwargs '{\"day\": \"2026-11-01\"}' -Q reports\n"
         "  csend proj.tasks.add --args '[1, 2]' --wait --backend redis://broker:6379/1\n"
         "  cres -A proj --state FAILURE --name 'billing.*' | csend -A proj -     # re-run the failed ones\n"
         "  csend - --rate 50/s < tasks.ndjson"),
    ]
    return parser


def run(ctx):
    args = ctx.args
    if args.task != "-" and cli.name_problem(args.task):
        raise UsageError(f"{cli.name_problem(args.task)} task name: {args.task!r}")
    if args.task == "-" and (args.args is not None or args.kwargs is not None):
        raise UsageError("--args and --kwargs are for one task by name; csend - takes them from each record")
    if args.wait and args.dry_run:
        raise UsageError("--wait and --dry-run do not go together")
    store = _result_store(args) if args.wait else None
    reader = _record_reader(ctx) if args.task == "-" else None
    tasks = _tasks_from(reader) if reader else [(args.task, args.args or [], args.kwargs or {}, {})]
    sender = Sender(ctx, without_results=not args.wait)
    sent = []
    if args.dry_run:
        for name, task_args, kwargs, routing in tasks:
            routing = sender.routing(routing)
            ctx.out.write({"type": "sent", "uuid": None, "name": name,
                           "queue": sender.queue_of(name, task_args, kwargs, routing),
                           "args": task_args, "kwargs": kwargs, "dry_run": True})
    else:
        sent = sender.send_all(tasks)
    status = ExitStatus.DATA_ERROR if reader and reader.bad_lines else ExitStatus.OK
    if store is not None and sent:
        if not _wait(ctx, store, sent, args.timeout):
            status = status or ExitStatus.FAILURE
    return status


def _result_store(args):
    from celops.core.results import open_store

    return open_store(args.backend, args.app, args.unsafe_pickle, args.timeout)


def _record_reader(ctx):
    from celops.core.ndjson import Reader

    return Reader(["-"], ctx.io.stdin, ctx.warn)


def _tasks_from(reader):
    """``(name, args, kwargs, routing)`` from each good record; the others are refused per line."""
    for source, number, record in reader.numbered_records():
        task, reason = task_of(record)
        if reason:
            reader.bad(source, number, reason)
        else:
            yield task


def task_of(record):
    """``((name, args, kwargs, routing), None)`` from a record, or ``(None, why not)``."""
    name = record.get("name") if record.get("name") is not None else record.get("task")
    if not isinstance(name, str) or cli.name_problem(name):
        return None, "no task name (a name or task field)"
    task_args, kwargs = record.get("args"), record.get("kwargs")
    if task_args is None:
        return None, f"no args for {name} (a result stored without result_extended?): not sent"
    if not isinstance(task_args, list):
        return None, f"args of {name} is a {type(task_args).__name__}, not a JSON list: not sent"
    if kwargs is not None and not isinstance(kwargs, dict):
        return None, f"kwargs of {name} is a {type(kwargs).__name__}, not a JSON object: not sent"
    routing = {}
    if isinstance(record.get("queue"), str) and not cli.name_problem(record["queue"]):
        routing["queue"] = record["queue"]
    if isinstance(record.get("priority"), int) and not isinstance(record["priority"], bool):
        routing["priority"] = record["priority"]
    return (name, task_args, kwargs or {}, routing), None


class Sender:
    """celery's send_task on one producer connection, paced by --rate."""

    def __init__(self, ctx, without_results):
        from celery import Celery

        self.ctx = ctx
        self.broker = ctx.broker
        self.app = self.broker.app or Celery("celops", broker=self.broker.url, set_as_current=False)
        if without_results:  # a result backend would make send_task subscribe to every task's result
            self.app.conf.result_backend = "disabled"
        args = ctx.args
        self.overrides = {key: value for key, value in (("queue", args.queue), ("priority", args.priority))
                          if value is not None}
        self.options = {key: value for key, value in (("countdown", args.countdown), ("eta", args.eta),
                                                      ("expires", args.expires)) if value is not None}
        if args.header:
            self.options["headers"] = dict(args.header)

    def routing(self, from_record):
        """The record's queue and priority, less what -Q and --priority override."""
        return {**from_record, **self.overrides}

    def queue_of(self, name, task_args, kwargs, routing):
        """The queue celery's router picks (the app's task_routes, else -Q or the record's, else celery)."""
        return self.app.amqp.router.route(dict(routing), name, task_args, kwargs)["queue"].name

    def send_all(self, tasks):
        """Send each task, printing its sent record once the broker has it; returns their ids.

        Without --rate, messages go BATCH at a time in one round trip where the transport can
        (kombu's Producer.batch: a Redis pipeline); elsewhere kombu publishes them one by one.
        """
        from celops.core.exits import BrokerUnavailable

        rate = self.ctx.args.rate
        interval = 1 / rate if rate else 0
        next_at = time.monotonic()
        ids = []
        tasks = iter(tasks)
        connection = self.broker.kombu(self.ctx.args.timeout)
        with self.app.amqp.Producer(connection) as producer:
            while chunk := list(itertools.islice(tasks, 1 if interval else BATCH)):
                records = []
                try:
                    with producer.batch(max_size=2 * BATCH):
                        for name, task_args, kwargs, routing in chunk:
                            routing = self.routing(routing)
                            if interval:
                                next_at = self._pace(next_at, interval)
                            result = self.app.send_task(name, task_args, kwargs, producer=producer, **routing,
                                                        **self.options)
                            records.append({"type": "sent", "uuid": result.id, "name": name,
                                            "queue": self.queue_of(name, task_args, kwargs, routing),
                                            "args": task_args, "kwargs": kwargs})
                except OSError as exc:
                    raise BrokerUnavailable(self.broker.url, str(exc)) from None
                for record in records:
                    self.ctx.out.write(record)
                    ids.append(record["uuid"])
        return ids

    @staticmethod
    def _pace(next_at, interval):
        """Wait for the next slot of --rate; returns the one after it."""
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        return max(next_at, time.monotonic() - interval) + interval


def _wait(ctx, store, ids, timeout):
    """Print each result record once its task is done, the rest as they stand at -t. True when all were done."""
    from celops.core.results import READY_STATES

    deadline = time.monotonic() + timeout
    pending = list(dict.fromkeys(ids))
    pause = 0.05
    while True:
        final = time.monotonic() >= deadline
        waiting = []
        for record in store.lookup(pending):
            done = record.get("state") in READY_STATES
            if done or final:
                ctx.out.write(record)
            if not done:
                waiting.append(record["uuid"])
        if final or not waiting:
            break
        pending = waiting
        ctx.out.flush()
        time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        pause = min(pause * 2, 0.5)
    if waiting:
        ctx.warn(f"{len(waiting)} task(s) not done within {timeout:g}s")
        return False
    return True


def main(argv=None, io=None):
    return cli.execute(build_parser, run, argv, io)
