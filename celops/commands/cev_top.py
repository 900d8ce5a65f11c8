"""A live terminal view of the cluster, with actions: workers, queues, tasks, failures.

cev-top is the celops `celery events` (the curses monitor): a header with
the broker, workers up and down, events, successes, failures and retries
per second and in total, and gaps in the stream; a pane of workers (alive,
active, processed, load, heartbeat age, version), one of queues (length,
unacked, consumers, and a trend, measured every few seconds the way cq-len
measures them), one of tasks (state, name, worker, runtime, age) and a
ticker of the last failures and retries. Enter opens a task's details:
arguments, result or exception, traceback, retries and timeline. Press ?
for the keys.

Where events come from: the broker (-b, -A, as every command); standard
input when it is a pipe or a file (cev-dump | cev-top), the keys then read
from /dev/tty; or a saved stream with --replay FILE, at its recorded pace
(or --speed times faster), with pause and step.

Actions (revoke, terminate, rate limit, shutdown, pool restart, add and
cancel consumer) are broadcast as cctl sends them, after a confirmation
when they destroy something; each reply shows in the status line. They go
to the broker -b/-A names (or the default one) and are off with --replay.
"""

import os

from celops.core import cli
from celops.core.exits import DataError, ExitStatus, UsageError

DEFAULT_REDRAW = 4.0


def build_parser():
    from celops.core.events import CONNECT_TIMEOUT_HELP, DEFAULT_CONNECT_TIMEOUT
    from celops.top.feeds import QUEUE_INTERVAL, add_source_options

    parser = cli.command_parser("cev-top", __doc__, timeout=DEFAULT_CONNECT_TIMEOUT,
                                timeout_help=CONNECT_TIMEOUT_HELP, writes_records=False)
    parser.add_argument("--live", action="store_true",
                        help="read events from the broker even when standard input is a pipe")
    parser.add_argument("--replay", metavar="FILE",
                        help="replay a saved stream of event records (cev-dump's output) at its recorded pace")
    parser.add_argument("--speed", type=cli.positive_float, default=1.0, metavar="N",
                        help="--replay: N times the recorded pace (default 1; + and - change it live)")
    add_source_options(parser)
    screen = parser.add_argument_group("screen")
    screen.add_argument("--redraw", type=cli.positive_float, default=DEFAULT_REDRAW, metavar="N",
                        help=f"repaint at most N times a second (default {DEFAULT_REDRAW:g}); once a second "
                             f"when nothing happens")
    screen.add_argument("--queue-interval", type=cli.positive_float, default=QUEUE_INTERVAL, metavar="SECONDS",
                        help=f"measure the queues this often (default {QUEUE_INTERVAL:g})")
    screen.add_argument("--max-tasks", type=cli.whole_number(1, cli.MAX_NUMBER), default=10000, metavar="N",
                        help="keep at most N tasks, oldest out first (default 10000)")
    screen.add_argument("--max-workers", type=cli.whole_number(1, cli.MAX_NUMBER), default=5000, metavar="N",
                        help="keep at most N workers, oldest out first (default 5000)")
    from celops.core.rabbit import add_management_option

    add_management_option(parser)
    parser.set_defaults(files=[], detach=False)  # what cev-cam's choice of source reads
    parser.man_sections.append(("KEYS", _keys_section()))
    parser.man_sections.append(("TERMINAL", (
        "cev-top needs a terminal that moves the cursor: TERM=xterm-256color over ssh is enough. Without "
        "colours (a monochrome terminal, or NO_COLOR set) failures are bold and the selection reversed. "
        "TERM=dumb or unset, a TERM that terminfo does not know, or a standard output that is not a terminal "
        "end it at once with one line on standard error and exit status 78 (an unusable configuration). "
        "q, SIGTERM and SIGHUP (exit 0) and Ctrl-C (exit 130) restore the terminal. It follows resizes. "
        "In a locale that is not UTF-8, lines are cut with ~ and the queue trend is drawn in ASCII.")))
    parser.man_sections.append(("INPUT", cli.RECORDS_INPUT.replace(" (--strict stops at the first)", "")
                                + " Bad lines are listed on standard error once the "
                                "screen is closed; events State refuses (a field of the wrong type) count as "
                                "bad lines too."))
    parser.man_sections.append(("FILES", (
        "w appends the selected task's record, the task record of cev-cam --tasks (see man 7 celops), to a "
        "file (default cev-top-ID.ndjson in the current directory). y copies its id with OSC 52, which xterm, "
        "tmux (set-clipboard on) and most terminals over ssh honour.")))
    parser.man_sections.append(("EXAMPLES", "\n".join([
        "  cev-top -b redis://localhost:6379/0",
        "  cev-top -A proj --enable-events",
        "  cev-dump --type task-failed,task-retried | cev-top",
        "  cev-top --replay incident.ndjson --speed 10",
    ])))
    return parser


def _keys_section():
    from celops.top.ui import HELP

    return "\n".join(f"  {keys:24}{what}" for keys, what in HELP)


def run(ctx):
    from celops.top import feeds, terminal
    from celops.top.draw import Frame
    from celops.top.model import TopModel
    from celops.top.ui import Ui

    args = ctx.args
    if args.replay and args.live:
        raise UsageError("--replay reads a file: drop --live")
    if args.speed != 1.0 and not args.replay:
        raise UsageError("--speed is for --replay")
    model = TopModel(max_tasks=args.max_tasks, max_workers=args.max_workers)
    bad_lines = []
    events, source_label = _event_feed(ctx, model, bad_lines.append)
    pacer = model.pace
    explicit_broker = bool(args.broker or args.app) or isinstance(events, feeds.BrokerEvents)
    broker = ctx.broker if explicit_broker or not args.replay else None
    ui = Ui(model, pacer=pacer, copy=terminal.copy_to_clipboard,
            no_control_reason="replaying a file (give -b or -A to act on a live broker)")
    if broker is not None:
        ui.control = feeds.Control(broker, lambda text: setattr(ui, "status", text))
    queues = explicit_broker and feeds.QueueLengths(model, broker, args.timeout, args.management_url,
                                                    args.queue_interval)
    running = [feed.start() for feed in (events, queues) if feed]

    def frame():
        problem = next((feed.problem() for feed in running if feed.failure), None)
        label = source_label
        if pacer is not None:
            label += f" x{pacer.speed:g}" + (" paused" if pacer.paused else "")
        if events.ended and events.failure is None:
            label += ", input ended"
        if bad_lines:
            problem = problem or f"{len(bad_lines)} bad input lines (listed on exit)"
        return Frame(broker.url if broker is not None else None, label, problem)

    try:
        terminal.run(ui, frame, args.redraw, os.environ)
    finally:
        for feed in running:
            feed.stop()
        for line in bad_lines:
            ctx.warn(line)
    for feed in running:
        if feed.failure is not None:
            raise feed.failure  # the wrapper says it in one line, with its exit status
    return DataError.status if bad_lines else ExitStatus.OK


def _event_feed(ctx, model, report):
    """The feed of events (--replay's file, a pipe on standard input, or the broker) and its label.

    Everything that can fail at start fails here, before the screen is
    taken, the source first: an unreadable --replay file (exit 65), an
    unreachable broker (69, as for every command, terminal or not), then a
    terminal cev-top cannot draw on (78).
    """
    from celops.core.events import reads_broker
    from celops.core.ndjson import Reader
    from celops.top import feeds, terminal

    args = ctx.args
    source = label = None
    if args.replay:
        try:
            open(args.replay, "rb").close()
        except OSError as exc:
            raise DataError(f"{args.replay}: {exc.strerror or exc}") from None
        label = f"replay {os.path.basename(args.replay)}"
    elif reads_broker(args, ctx.io):
        source, label = feeds.open_events(ctx.broker, args), "live"
    try:
        terminal.check_terminal(os.environ)
        records = terminal.keyboard_from_tty(records_on_stdin=label is None)
    except BaseException:
        if source is not None:
            source.close()
        raise
    if source is not None:
        return feeds.BrokerEvents(model, source), label
    if args.replay:
        model.pace = feeds.Pacer(args.speed)
        return feeds.RecordEvents(model, Reader([args.replay], None, report), model.pace), label
    return feeds.RecordEvents(model, Reader(["-"], records or ctx.io.stdin, report)), "stdin"


def main(argv=None, io=None):
    return cli.execute(build_parser, run, argv, io)
