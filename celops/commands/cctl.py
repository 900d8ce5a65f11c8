"""Send celery inspect and control broadcasts; write one reply record per worker as it arrives.

cctl is the scriptable celery inspect, celery control and celery status. It
sends the command through celery's pidbox mailbox, the way
app.control.broadcast does, and writes each worker's reply the moment it
arrives. No -A app is needed: a broker URL is enough.

-t is an overall deadline (default 1 s), not an idle gap after each reply.
With -d or --expect, cctl returns as soon as that many workers replied.
revoke, terminate and query_task take task ids as arguments, or - to read
them from standard input: plain lines or NDJSON records (see --id-field),
sent in batches, one broadcast per --batch-size ids.
"""

import argparse
import time
from collections import namedtuple

from celops.core import cli
from celops.core.exits import ExitStatus, UsageError

DEFAULT_ID_FIELDS = ("uuid", "id", "task_id", "request.id")

CALL_HELP = (
    "cctl call NAME [KEY=VALUE...] [--json OBJECT] sends any command by name: a custom one that the workers "
    "register with celery.worker.control's @control_command or @inspect_command (which celery's CLI refuses "
    "to send), or a built-in one with arguments cctl has no option for. Each KEY=VALUE is a keyword argument "
    "of the command's handler; its VALUE is read as JSON when it is valid JSON and is a string otherwise: "
    "n=2 sends the number 2, ratio=0.5 a float, flag=true and flag=false booleans, x=null None, "
    "ids='[\"a\",\"b\"]' a list, opts='{\"k\":1}' an object, name=video the string \"video\", and "
    "name='\"2\"' the string \"2\". --json OBJECT gives keyword arguments as one JSON object; KEY=VALUE "
    "pairs are added to it, and a key given twice is a usage error. The replies are collected like any "
    "other command's, as reply records whose command is NAME. A worker that has no such command replies "
    "{\"error\": ...}. NAME shutdown, pool_restart or pool_shrink needs -d or --all, as the commands "
    "themselves do.\n\n"
    "  cctl call increase_prefetch_count n=3 -d w1@host\n"
    "  cctl call rate_limit --json '{\"task_name\": \"proj.add\", \"rate_limit\": \"10/m\"}'")


def _signal_name(text):
    """``KILL``, ``SIGKILL`` or ``9`` -> ``SIGKILL`` (celery's workers want the uppercase name)."""
    import signal

    try:
        number = int(text)
    except ValueError:
        name = text.upper()
        name = name if name.startswith("SIG") else f"SIG{name}"
        if isinstance(getattr(signal.Signals, name, None), signal.Signals):
            return name
        raise ValueError(f"unknown signal {text!r}") from None
    try:
        return signal.Signals(number).name
    except ValueError:
        raise ValueError(f"unknown signal {text!r}") from None


def _rate(text):
    """A rate limit as the worker takes it (checked here; 0 means none)."""
    cli.rate_per_second(text)
    return text.strip()


def _typed_value(text):
    """A ``call`` argument's value: JSON when it is JSON (42, 1.5, true, null, [1, 2], {"a": 1}, "7"), else the text.

    NaN and Infinity stay text: the pidbox's JSON would not carry them.
    """
    import json

    def refuse(constant):
        raise ValueError(constant)

    try:
        return json.loads(text, parse_constant=refuse)
    except ValueError:
        return text


def _json_object(text):
    """``--json``: a JSON object, the keyword arguments of a ``call``."""
    import json

    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"not a JSON object: {text!r}")
    return value


def _command_name(text):
    """celery's ``inspect``/``control`` word is a habit: say so in one line, not with the list of commands.

    A UsageError, not an ArgumentTypeError: argparse would add the whole usage to it.
    """
    if text in ("inspect", "control"):
        raise UsageError(f'drop "{text}": cctl takes the command itself, e.g. cctl ping, cctl active')
    return text


# One pidbox command, shaped after celery 5.7's ``Panel.meta`` and ``app.control`` (a namedtuple:
# typing.NamedTuple would cost a start-up import). Fields:
#   summary; args, optional: (name, type) positional arguments, required and optional;
#   variadic: the argument the remaining values go to, as a list; minimum: how many it needs;
#   ids: the variadic values are task ids and - reads them from stdin; each: --each flattens the reply;
#   destructive: needs -d or --all; silent: workers never reply (they exit first), so not waited for;
#   options: the command-specific options it takes.
Command = namedtuple("Command", "summary args optional variadic minimum ids each destructive silent options",
                     defaults=((), (), None, 0, False, False, False, False, ()))


REVOKE_OPTIONS = ("terminate", "signal")
# the options that belong to some commands only (all off by default)
COMMAND_OPTIONS = ("include_defaults", "terminate", "signal", "exchange", "exchange_type", "routing_key",
                   "modules", "reload", "json")
# how the synopsis shows an option's value
OPTION_VALUES = {"signal": " SIG", "json": " OBJECT"}
COMMANDS = {
    # inspect
    "active": Command("tasks being executed", each=True),
    "active_queues": Command("queues being consumed from"),
    "clock": Command("the logical clock value"),
    "conf": Command("the configuration (--include-defaults for all of it)", options=("include_defaults",)),
    "memdump": Command("statistics of previous memsample calls", optional=(("samples", int),)),
    "memsample": Command("sample the current RSS memory usage"),
    "objgraph": Command("graph uncollected objects (needs objgraph on the worker)",
                        optional=(("type", str), ("num", int), ("max_depth", int))),
    "ping": Command("ping workers"),
    "query_task": Command("task state and info by id", variadic="ids", minimum=1, ids=True),
    "registered": Command("registered tasks, optionally with these attributes", variadic="taskinfoitems",
                          each=True),
    "report": Command("installation information for bug reports"),
    "reserved": Command("tasks received and waiting to run", each=True),
    "revoked": Command("ids of revoked tasks", each=True),
    "scheduled": Command("ETA and countdown tasks waiting for their time", each=True),
    "stats": Command("worker statistics"),
    "status": Command("the live nodes, as ping replies"),
    # control
    "add_consumer": Command("start consuming from a queue", args=(("queue", str),),
                            options=("exchange", "exchange_type", "routing_key")),
    "cancel_consumer": Command("stop consuming from a queue", args=(("queue", str),)),
    "autoscale": Command("set the autoscaler's maximum and minimum", args=(("max", int), ("min", int))),
    "pool_grow": Command("add N pool processes", args=(("n", int),)),
    "pool_shrink": Command("remove N pool processes", args=(("n", int),), destructive=True),
    "pool_restart": Command("restart the pool (worker_pool_restarts must be on)", destructive=True,
                            options=("modules", "reload")),
    "enable_events": Command("start sending task events"),
    "disable_events": Command("stop sending task events"),
    "heartbeat": Command("send a worker-heartbeat event now"),
    "election": Command("hold an election", args=(("id", str), ("topic", str)), optional=(("action", str),)),
    "rate_limit": Command("set a task's rate limit, e.g. 10/s", args=(("task_name", str), ("rate_limit", _rate))),
    "time_limit": Command("set a task's soft and hard time limits in seconds",
                          args=(("task_name", str), ("soft", float)), optional=(("hard", float),)),
    "revoke": Command("revoke tasks by id", variadic="task_id", minimum=1, ids=True, options=REVOKE_OPTIONS),
    "terminate": Command("revoke and kill running tasks with SIGNAL", args=(("signal", _signal_name),),
                         variadic="task_id", minimum=1, ids=True),
    "revoke_by_stamped_headers": Command("revoke tasks whose stamped headers match KEY=VALUE",
                                         variadic="headers", minimum=1, options=REVOKE_OPTIONS),
    "shutdown": Command("shut workers down (they exit without replying)", destructive=True, silent=True),
    # any command, custom ones included (celery.worker.control's @control_command and @inspect_command)
    "call": Command("any command by NAME, with KEY=VALUE arguments (see CALL)", args=(("name", str),),
                    variadic="pairs", options=("json",)),
}


def synopsis(name, command):
    words = [name] + [arg.upper() for arg, _ in command.args] + [f"[{arg.upper()}]" for arg, _ in command.optional]
    if command.ids:
        words.append("ID...|-")
    elif command.variadic == "headers":
        words.append("KEY=VALUE...")
    elif command.variadic == "pairs":
        words.append("[KEY=VALUE...]")
    elif command.variadic:
        words.append(f"[{command.variadic.upper()}...]")
    words += [f"[--{option.replace('_', '-')}{OPTION_VALUES.get(option, '')}]" for option in command.options]
    return " ".join(words)


def build_parser():
    parser = cli.command_parser(
        "cctl", __doc__, timeout=1.0,
        timeout_help="overall deadline in seconds for connecting, sending and collecting replies "
                     "(default 1.0); with ids from stdin it starts once they are read")
    parser.add_argument("command", metavar="COMMAND", type=_command_name, choices=list(COMMANDS),
                        help=f"one of {', '.join(COMMANDS)} (their arguments: man cctl, COMMANDS)")
    parser.add_argument("arguments", nargs="*", default=[], metavar="ARG",  # a default: ARG is optional
                        help="the command's arguments")
    cli.add_destination_option(
        parser, "only these workers (comma-separated, repeatable); return as soon as they all replied")
    parser.add_argument("--expect", type=cli.whole_number(1), metavar="N",
                        help="return as soon as N workers replied; exit 1 if fewer did")
    parser.add_argument("--each", action="store_true",
                        help="one record per item of a list reply (active, reserved, scheduled, revoked, registered)")
    parser.add_argument("--all", action="store_true",
                        help="consent to send shutdown, pool_restart or pool_shrink to every worker (no -d)")
    parser.add_argument("--include-defaults", action="store_true", help="conf: include default settings")
    parser.add_argument("--terminate", action="store_true", help="revoke: also kill the task if it is running")
    parser.add_argument("--signal", type=_signal_name, metavar="SIG",
                        help="revoke --terminate: the signal (default SIGTERM), e.g. KILL or SIGKILL")
    parser.add_argument("--exchange", help="add_consumer: the queue's exchange (default: the queue name)")
    parser.add_argument("--exchange-type", metavar="TYPE", help="add_consumer: direct, topic or fanout")
    parser.add_argument("--routing-key", metavar="KEY", help="add_consumer: the binding's routing key")
    parser.add_argument("--modules", type=cli.name_list("module name"), metavar="M1,M2",
                        help="pool_restart: modules to import (or reload with --reload)")
    parser.add_argument("--reload", action="store_true", help="pool_restart: reload modules already imported")
    parser.add_argument("--json", type=_json_object, metavar="OBJECT",
                        help='call: keyword arguments as one JSON object, e.g. \'{"n": 2}\'')
    parser.add_argument("--id-field", action="append", type=cli.name("field name"), metavar="FIELD",
                        help="with -: the field of NDJSON input holding the task id (repeatable; dots walk "
                             f"into objects); default: the first present of {', '.join(DEFAULT_ID_FIELDS)}")
    parser.add_argument("--batch-size", type=cli.whole_number(1), default=1000, metavar="N",
                        help="ids per broadcast (default 1000)")
    # `cctl revoke -d w1 ID` puts options between the command's arguments
    parser.parse_args = parser.parse_intermixed_args
    cli.document_names_input(parser)
    parser.man_sections.append(("COMMANDS", "\n".join(
        f"  {synopsis(name, command):52}  {command.summary}" for name, command in COMMANDS.items())))
    parser.man_sections.append(("CALL", CALL_HELP))
    parser.man_sections.append(("EXAMPLES", "\n".join([
        "  cctl ping -d w1@host,w2@host",
        "  cctl stats | jq -c '{worker, pool: .reply.pool.\"max-concurrency\"}'",
        "  cctl active --each | jq -c 'select(.name == \"proj.slow\")' | cctl terminate KILL -",
        "  cq-peek celery | jq -c 'select(.task == \"proj.bad\")' | cctl revoke -",
        "  cctl shutdown -d w1@host"])))
    parser.man_sections.append(("CAVEATS", (
        "Exit status 0 means at least one worker replied, or, with -d or --expect, that all expected "
        "ones did; 1 otherwise, naming on standard error the workers of -d that did not reply. shutdown exits 0 once sent: workers exit without replying. A worker busy in a long task on the solo pool answers only when the "
        "task ends, after the deadline. A reply of a worker that answers after cctl exited is dropped "
        "by the broker: the reply queue is gone.")))
    return parser


# What validation makes of the command line, before anything is sent: the command, the worker
# arguments, the variadic values (ids may include "-") and the destination workers.
# wire: the command name sent to the workers (status is a ping; call sends its NAME).
Request = namedtuple("Request", "command arguments variadic destination wire")


def parse_request(args):
    """Check the command's arguments and options; raise UsageError before anything is sent."""
    name, command = args.command, COMMANDS[args.command]
    _check_options(args, name, command)
    values = list(args.arguments)
    arguments = {}
    fixed = list(command.args) + list(command.optional)
    for index, (arg, convert) in enumerate(fixed):
        if index >= len(values):
            if index < len(command.args):
                raise UsageError(f"{name} needs {arg.upper()}: {synopsis(name, command)}")
            break
        arguments[arg] = _convert(name, arg, convert, values[index])
    extra = values[len(fixed):]
    if not command.variadic and extra:
        raise UsageError(f"{name} takes no more arguments than: {synopsis(name, command)}")
    if len(extra) < command.minimum:
        raise UsageError(f"{name} needs at least {command.minimum} {command.variadic.upper()}: "
                         f"{synopsis(name, command)}")
    if extra.count("-") > 1 or ("-" in extra and not command.ids):
        raise UsageError(f"{name}: - (ids from stdin) may be given once, to revoke, terminate or query_task")
    destination = list(dict.fromkeys(args.destination or ()))
    if name == "call":
        wire = arguments.pop("name")
        arguments = _call_arguments(args.json, extra)
    else:
        wire = "ping" if name == "status" else name
        arguments.update(_option_arguments(args, name, extra))
    # call shutdown needs the same consent as shutdown
    if COMMANDS.get(wire, command).destructive and not destination and not args.all:
        raise UsageError(f"{wire} would go to every worker: name them with -d, or add --all")
    return Request(name, arguments, extra, destination, wire)


def _call_arguments(json_object, pairs):
    """``call``'s keyword arguments: --json's object, then each KEY=VALUE with its value typed (_typed_value)."""
    arguments = dict(json_object or {})
    for text in pairs:
        key, value = _convert("call", "KEY=VALUE", cli.key_value, text)
        if not key.isidentifier():
            raise UsageError(f"call: {key!r} is not an argument name (letters, digits and _)")
        if key in arguments:
            raise UsageError(f"call: {key} is given twice")
        arguments[key] = _typed_value(value)
    return arguments


def _convert(name, arg, convert, text):
    try:
        return convert(text)
    except ValueError as exc:
        reason = str(exc) if convert not in (int, float) else f"not a number: {text!r}"
        raise UsageError(f"{name} {arg.upper()}: {reason}") from None


def _check_options(args, name, command):
    """Command-specific options are refused where they mean nothing."""
    for option in COMMAND_OPTIONS:
        if getattr(args, option) not in (None, False) and option not in command.options:
            raise UsageError(f"--{option.replace('_', '-')} does not apply to {name}")
    if args.signal and not args.terminate:
        raise UsageError("--signal needs --terminate")
    if args.each and not command.each:
        raise UsageError(f"--each does not apply to {name}: only to "
                         + ", ".join(other for other, spec in COMMANDS.items() if spec.each))
    if args.id_field and not command.ids:
        raise UsageError(f"--id-field does not apply to {name}")


def _option_arguments(args, name, extra):
    """The arguments the worker's handler takes from options and variadic values."""
    if name == "conf":
        return {"with_defaults": args.include_defaults}
    if name == "add_consumer":
        return {"exchange": args.exchange, "exchange_type": args.exchange_type, "routing_key": args.routing_key}
    if name == "pool_restart":
        return {"modules": args.modules, "reload": args.reload, "reloader": None}
    if name == "revoke_by_stamped_headers":
        for text in extra:
            _convert(name, "KEY=VALUE", cli.key_value, text)
        # as celery's CLI sends them, KEY=VALUE strings: the worker splits them itself
        terminate = {"terminate": True, "signal": args.signal} if args.terminate else {}
        return {"headers": list(extra), **terminate}
    if name == "revoke":
        return {"terminate": args.terminate, "signal": args.signal}
    if name == "registered":
        return {"taskinfoitems": extra}
    return {}


def run(ctx):
    args = ctx.args
    request = parse_request(args)
    command = COMMANDS[request.command]
    reader = None
    batches = [request.arguments]
    if command.ids:
        ids = list(request.variadic)
        if "-" in ids:
            from celops.core.ndjson import Reader

            reader = Reader(["-"], ctx.io.stdin, ctx.warn)
            at = ids.index("-")
            ids[at:at + 1] = reader.values(tuple(args.id_field or DEFAULT_ID_FIELDS), ids=True)
        if not ids:
            ctx.warn("no task ids on input: nothing sent")
            return ExitStatus.DATA_ERROR if reader.bad_lines else ExitStatus.OK
        size = args.batch_size
        batches = [dict(request.arguments, **{command.variadic: ids[start:start + size]})
                   for start in range(0, len(ids), size)]
    expected = args.expect or len(request.destination)  # 0: as many as reply in time
    replied = collect(ctx, request, batches, expected)
    if command.silent:
        return ExitStatus.OK
    summarize(ctx, request, replied, expected)
    if reader is not None and reader.bad_lines:
        return ExitStatus.DATA_ERROR
    return ExitStatus.OK if answered(replied, expected) else ExitStatus.FAILURE


def answered(replied, expected):
    """Every request has its expected number of workers' replies, or, expecting none in particular, any."""
    if expected:
        return all(len(workers) >= expected for workers in replied.values())
    return any(replied.values())


def collect(ctx, request, batches, expected):
    """Send every batch, write replies as they arrive; returns {ticket: set of workers that replied}."""
    from celops.core.broadcast import open_mailbox

    args = ctx.args
    deadline = time.monotonic() + args.timeout
    wire_command = request.wire
    with open_mailbox(ctx.broker, args.timeout, ctx.warn) as mailbox:
        replied = {mailbox.request(wire_command, batch, request.destination, expires_in=args.timeout): set()
                   for batch in batches}
        if COMMANDS[request.command].silent:
            return replied
        for ticket, hostname, reply in mailbox.replies(deadline):
            if hostname in replied[ticket]:
                continue
            replied[ticket].add(hostname)
            write_reply(ctx, wire_command, hostname, reply)
            if expected and answered(replied, expected):
                break
    return replied


def write_reply(ctx, command, hostname, reply):
    from celops.core.redact import redact

    received = time.time()
    head = {"type": "reply", "command": command, "hostname": hostname, "worker": hostname}
    reply = redact(reply)
    if not (ctx.args.each and isinstance(reply, list)):
        ctx.out.write({**head, "reply": reply, "received": received})
        return
    for item in reply:
        ctx.out.write({**head, **each_fields(command, item), "received": received})


def each_fields(command, item):
    """One item of a list reply as top-level fields, for jq and for ``cctl revoke -``.

    Task requests (active, reserved, and the request inside a scheduled
    entry) keep their own fields plus ``uuid``; their ``type`` and ``hostname``
    repeat ``name`` and the worker, so they give way to the record's own.
    A revoked item is a task id (``uuid``), a registered one a task ``name``.
    """
    if command == "revoked":
        return {"uuid": item}
    if not isinstance(item, dict):
        return {"name": item} if command == "registered" else {"item": item}
    if command == "scheduled":
        item = {**item.get("request", {}), **{k: v for k, v in item.items() if k != "request"}}
    fields = {key: value for key, value in item.items() if key not in ("type", "hostname")}
    if "id" in item:
        fields["uuid"] = item["id"]
    return fields


def summarize(ctx, request, replied, expected):
    """Who did not answer, on stderr always (cron and CI must see it); "2 nodes replied" on a terminal only."""
    workers = set().union(*replied.values())
    ctx.flush()  # a table on the terminal is drawn at a flush: before the summary, not after it
    if ctx.io.stderr_is_tty():
        ctx.io.stderr.write(f"{len(workers)} node{'s' * (len(workers) != 1)} replied\n")
    missing = [worker for worker in request.destination
               if not all(worker in answered_by for answered_by in replied.values())]
    if missing:
        ctx.warn(f"no reply from {', '.join(missing)} within {ctx.args.timeout:g}s")
    elif not workers:
        ctx.warn(f"no nodes replied within {ctx.args.timeout:g}s")
    elif not answered(replied, expected):
        fewest = min(len(answered_by) for answered_by in replied.values())
        ctx.warn(f"{fewest} of {expected} expected nodes replied within {ctx.args.timeout:g}s")


def main(argv=None, io=None):
    return cli.execute(build_parser, run, argv, io)
