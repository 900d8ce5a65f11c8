"""Take snapshots of the cluster State on a timer, from event records or from the broker.

cev-cam does the job of `celery events --camera`: it keeps a State built
from the event stream (workers alive or offline by heartbeat, each task's
merged state, counts, runtimes, queue wait) and every --frequency seconds
hands a snapshot to a sink: snapshot records on stdout (the default), an
SQLite history, or a Prometheus textfile for node_exporter. With --camera
a celery Polaroid subclass gets on_shutter(state) with a real celery State.

Where events come from: FILE arguments (- is standard input), or standard
input when it is a pipe or a file (cev-dump | cev-cam, cev-cam < saved.ndjson);
otherwise, or with --live, -b, -A or --detach, it reads the broker itself. Under cron,
whose standard input is a pipe, say --live (or -b).

The input is cev-dump's records: events, celops-gap records (counted, shown
as gaps), error records (counted). Other records are counted as ignored.
Bad lines are reported as PROG: FILE:LINE: reason and skipped; the exit
status is then 65 (--strict stops at the first). The input's end, --duration,
or SIGTERM take a last snapshot and exit 0; Ctrl-C exits 130.

An event with a field of the wrong type or out of range (a timestamp that
is not a number, a freq above 3600 s, a negative retries...) is never
applied: it is counted in the snapshot's invalid field and reported, as
PROG: FILE:LINE: reason from files or standard input (exit 65), or as a
warning on standard error when it comes from the broker (the first 10; the
exit status stays 0, since no input of the user's was wrong).
"""


from celops.core import cli
from celops.core.exits import ExitStatus, UsageError

POSTGRESQL_HELP = (
    "--sink sql --database postgresql://USER:PASSWORD@HOST:PORT/DB (or postgres://; any libpq URL and its "
    "?options) writes the same history into PostgreSQL through psycopg 3 (pip install 'celops[db]'), "
    "so that a team shares it and Grafana's PostgreSQL data source charts it. The tables are created when "
    "missing; each shot is one transaction; --retain works as with SQLite. The password is never shown: "
    "not in errors and not in ps (the process title masks it). A server that cannot be reached, at start "
    "or later, ends cev-cam with exit 69; a role refused the tables, 77; other database errors, 73. "
    "Without a URL --database is an SQLite file, the embedded default. The tables, in PostgreSQL's types "
    "(record is jsonb; a task outlives the snapshot that wrote it, so snapshot_id is set to null when "
    "--retain drops that snapshot):")


def build_parser():
    from celops.core import sinks
    from celops.core.daemon import add_daemon_options
    from celops.core.events import CONNECT_TIMEOUT_HELP, DEFAULT_CONNECT_TIMEOUT, add_source_options
    from celops.core.scrape import LISTEN_HELP, listen_address

    parser = cli.command_parser(
        "cev-cam", __doc__, timeout=DEFAULT_CONNECT_TIMEOUT, timeout_help=CONNECT_TIMEOUT_HELP)
    cli.add_input_options(parser, "event records (cev-dump's output)")
    parser.add_argument("--live", action="store_true",
                        help="read events from the broker even when standard input is a pipe")
    add_source_options(parser)
    timing = parser.add_argument_group("snapshots")
    timing.add_argument("--frequency", "-F", type=cli.positive_float, default=1.0, metavar="SECONDS",
                        help="take a snapshot this often (default 1.0)")
    timing.add_argument("--maxrate", "-r", type=cli.positive_rate, metavar="RATE",
                        help="at most this many snapshots: N/s, N/m or N/h (a token bucket)")
    timing.add_argument("--clear-after", action="store_true", help="forget the tasks after each snapshot")
    timing.add_argument("--once", action="store_true",
                        help="one snapshot only, at the end of input or after --duration")
    timing.add_argument("--duration", type=cli.positive_float, metavar="SECONDS",
                        help="stop after this long (with a last snapshot)")
    timing.add_argument("--max-tasks", type=cli.whole_number(1, cli.MAX_NUMBER), default=10000, metavar="N",
                        help="keep at most N tasks, oldest out first (default 10000)")
    timing.add_argument("--max-workers", type=cli.whole_number(1, cli.MAX_NUMBER), default=5000, metavar="N",
                        help="keep at most N workers, oldest out first (default 5000)")
    output = parser.add_argument_group("sinks")
    output.add_argument("--sink", choices=("ndjson", "sql", "sqlite", "prom"), default="ndjson",
                        help="where snapshots go (default ndjson: records on stdout); sql: a history in SQLite "
                             "or PostgreSQL (sqlite is its old name)")
    output.add_argument("--tasks", action="store_true",
                        help="ndjson: also a task record per task changed since the last shot")
    output.add_argument("--database", metavar="PATH|URL",
                        help="sql: an SQLite file, or a postgresql://USER:PASSWORD@HOST/DB URL")
    output.add_argument("--retain", type=cli.positive_float, metavar="DAYS",
                        help="sql: delete rows older than this (at start, then hourly)")
    output.add_argument("--textfile", metavar="PATH", help="prom: the file node_exporter reads")
    output.add_argument("--listen", type=listen_address, metavar="ADDR",
                        help=f"prom: serve the last shot's metrics at http://ADDR/metrics; ADDR is {LISTEN_HELP}")
    output.add_argument("--camera", "-c", metavar="MODULE.CLASS",
                        help="a celery Polaroid subclass to hand a celery State to, instead of a sink")
    add_daemon_options(parser)
    parser.man_sections.append(("SQLITE SCHEMA", sinks.SQLITE_SCHEMA.strip() + "\n\nEach shot is one "
                                "transaction: a snapshots row (record holds the snapshot as JSON) and an "
                                "upsert of the changed tasks. The journal is WAL, so a killed writer "
                                "leaves a readable database."))
    parser.man_sections.append(("POSTGRESQL", POSTGRESQL_HELP + "\n\n" + sinks.POSTGRESQL_SCHEMA.strip()))
    parser.man_sections.append(("PROMETHEUS METRICS", sinks.PROM_MAPPING))
    parser.man_sections.append(("EXAMPLES", "\n".join([
        "  cev-dump | cev-cam --frequency 5",
        "  cev-cam --once < saved.ndjson | jq .tasks.by_state",
        "  cev-cam --live --duration 60 --once --sink prom --textfile /var/lib/node_exporter/celery.prom",
        "  cev-cam --live --sink sql --database celery.db --retain 7 --detach --pidfile cam.pid "
        "--logfile cam.log",
        "  cev-cam --live --frequency 10 --sink sql --database postgresql://cam@db.example/celery --retain 30",
        "  cev-cam --once --tasks < saved.ndjson | jq -c 'select(.state==\"STARTED\")' | cctl revoke -",
        "  cev-cam --live --camera myapp.DumpCam --frequency 2",
    ])))
    return parser


def check_options(args):
    if args.camera and (args.sink != "ndjson" or args.tasks):
        raise UsageError("--camera replaces the sink: drop --sink/--tasks")
    if args.sink in ("sql", "sqlite") and not args.database:
        raise UsageError(f"--sink {args.sink} needs --database PATH or a postgresql:// URL")
    if args.sink == "prom" and not (args.textfile or args.listen):
        raise UsageError("--sink prom needs --textfile PATH or --listen ADDR")
    if args.listen and args.sink != "prom":
        raise UsageError("--listen is for --sink prom")
    if args.retain and args.sink not in ("sql", "sqlite"):
        raise UsageError("--retain is for --sink sql")
    if args.detach and args.sink == "ndjson" and not args.camera:
        raise UsageError("--detach needs --sink sql or prom, or --camera (stdout goes away)")


def run(ctx):
    from celops.core.camera import BrokerRejects, open_camera, snap
    from celops.core.daemon import detach, refuse_running, write_pidfile

    args = ctx.args
    check_options(args)
    source = None
    from celops.core.events import EventSource, reads_broker

    if reads_broker(args, ctx.io):
        source = EventSource.from_args(ctx.broker, args)
    camera = None
    try:
        # Everything that can fail at start fails here, in the foreground, before
        # --detach: a dead broker is exit 69 and a bad path exit 73 for the user
        # who typed the command, not a line in --logfile.
        if source is not None:
            source.connect()
        camera = open_camera(args, ctx.out, ctx.warn)
        if args.detach:
            refuse_running(args.pidfile)
            camera.close()  # an SQLite connection must not cross a fork: the daemon opens its own
            camera = None
            detach(args.pidfile, args.logfile)
            camera = open_camera(args, ctx.out, ctx.warn)
        elif args.pidfile:
            write_pidfile(args.pidfile)
        if source is not None:
            reject = BrokerRejects(ctx.warn)
            with source:
                return snap(args, camera, lambda: camera.ingest(((None, record) for record in source), reject),
                            lambda: ExitStatus.OK)
        reader = ctx.reader()
        located = (((name, number), record) for name, number, record in reader.numbered_records())
        return snap(args, camera, lambda: camera.ingest(located, lambda where, reason: reader.bad(*where, reason)),
                    lambda: ExitStatus.DATA_ERROR if reader.bad_lines else ExitStatus.OK)
    finally:
        if camera is not None:
            camera.close()
        if source is not None:
            source.close()


def main(argv=None, io=None):
    return cli.execute(build_parser, run, argv, io)
