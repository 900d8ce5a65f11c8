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

import atexit
import os
import signal
import stat
import sys
import threading
import time

from celops.core import cli
from celops.core.exits import ExitStatus, UsageError
from celops.core.outfiles import cannot_create

CLEANUP_INTERVAL = 3600.0  # seconds, as celery's Polaroid cleanup_freq
BROKER_WARNINGS = 10  # bad events from the broker warned about; the rest only counted

SNAPSHOT_RECORD = (
    '{"type": "snapshot", "timestamp": EPOCH, "event_count": N, "gaps": N, "errors": N, "ignored": N, '
    '"invalid": N, '
    '"workers": [{"hostname", "alive", "active", "processed", "loadavg", "freq", "last_heartbeat", '
    '"sw_ver"}], "tasks": {"count": N, "by_state": {STATE: N}, "by_name": {NAME: {STATE: N}}, '
    '"by_worker": {HOSTNAME: {STATE: N}}, "runtime": {NAME: {"count", "p50", "p95", "max"}}}, '
    '"wait": {NAME: {"count", "p50", "p95", "max"}}}. Counts, runtimes and waits are over the '
    "tasks in the table (at most --max-tasks; since the last shot with --clear-after). timestamp is "
    "the stream's clock: the last local_received plus the time since it was read, so a replayed "
    "file is judged as of its end; it never goes backwards. With --tasks, before each snapshot one "
    '{"type": "task", "uuid", "name", "state", "hostname", "timestamp", "received", "started", '
    '"succeeded", "failed", "runtime", "retries", "exception", "wait"} per task changed since the '
    "last shot (fields that are unknown are left out)."
)


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
    daemon = parser.add_argument_group("daemon")
    daemon.add_argument("--detach", action="store_true", help="run in the background")
    daemon.add_argument("--pidfile", metavar="PATH", help="write the process id here; refuse if it is running")
    daemon.add_argument("--logfile", metavar="PATH", help="where diagnostics go when detached")
    parser.man_sections.append(("RECORDS", SNAPSHOT_RECORD))
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


class TokenBucket:
    """One token per shot, refilled at ``rate`` per second, holding at most one."""

    def __init__(self, rate):
        self.rate = rate
        self.tokens = 1.0
        self.filled = time.monotonic()

    def can_consume(self):
        now = time.monotonic()
        self.tokens = min(1.0, self.tokens + (now - self.filled) * self.rate)
        self.filled = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class Camera:
    """The built-in path: the lean State, a sink, --maxrate and --clear-after."""

    def __init__(self, args, out, warn=None):
        from celops.core.sinks import open_sink
        from celops.core.state import State

        self.state = State(max_tasks=args.max_tasks, max_workers=args.max_workers)
        self.sink = open_sink(args, out, warn)
        self.bucket = args.maxrate and TokenBucket(args.maxrate)
        self.clear_after = args.clear_after
        self.lock = threading.Lock()
        self.read_at = None  # wall time when the stream's clock last moved
        self.last_now = 0.0

    def ingest(self, located_records, reject):
        """Apply ``(where, record)`` pairs; ``reject(where, reason)`` hears of each bad event (not applied)."""
        state, lock, clock = self.state, self.lock, time.time
        for where, record in located_records:
            with lock:
                stream_time = state.stream_time
                problem = state.event(record)
                if state.stream_time != stream_time:
                    self.read_at = clock()
            if problem is not None:
                reject(where, problem)

    def now(self):
        """The stream's clock: the last local_received plus the time since it was read; never backwards.

        Records without local_received (a celops-gap after a broker restart)
        do not move it, and an event read later than the one before it
        (a backlog) cannot take it back.
        """
        wall = time.time()
        stream_time = self.state.stream_time
        now = wall if not stream_time or self.read_at is None else stream_time + (wall - self.read_at)
        self.last_now = max(now, self.last_now)
        return self.last_now

    def shoot(self, last=False):
        """A snapshot to the sink, unless --maxrate says not now (the last one always goes)."""
        if not last and self.bucket and not self.bucket.can_consume():
            return
        with self.lock:
            self.sink.shoot(self.state, self.now())
            if self.clear_after:
                self.state.clear_tasks()

    def cleanup(self):
        self.sink.cleanup(time.time())

    def close(self):
        self.sink.close()


class PolaroidCamera:
    """--camera: a celery State fed as celery feeds it, and the camera's own shutter."""

    def __init__(self, args):
        from celery.events.snapshot import Polaroid
        from celery.events.state import State

        camera_class = _import_class(args.camera)
        if not (isinstance(camera_class, type) and issubclass(camera_class, Polaroid)):
            raise UsageError(f"--camera {args.camera}: not a celery.events.snapshot.Polaroid subclass")
        self.state = State(max_tasks_in_memory=args.max_tasks, max_workers_in_memory=args.max_workers)
        maxrate = args.maxrate and f"{args.maxrate}/s"
        self.camera = camera_class(self.state, freq=args.frequency, maxrate=maxrate,
                                   cleanup_freq=CLEANUP_INTERVAL)
        if args.clear_after:
            self.camera.clear_after = True

    def ingest(self, located_records, reject):
        from celops.core.state import event_problem

        event = self.state.event
        for where, record in located_records:
            problem = event_problem(record)
            if problem is not None:
                reject(where, problem)
                continue
            kind = record.get("type")
            if isinstance(kind, str) and kind.startswith(("task-", "worker-")):
                try:
                    event(record)
                except (KeyError, TypeError, AttributeError):
                    pass  # an event celery's State cannot take (a required field missing)

    def shoot(self, last=False):
        self.camera.capture()

    def cleanup(self):
        self.camera.cleanup()

    def close(self):
        pass


def _import_class(path):
    from importlib import import_module

    module_name, _, class_name = path.replace(":", ".").rpartition(".")
    if not module_name:
        raise UsageError(f"--camera {path}: expected MODULE.CLASS")
    sys.path.insert(0, os.getcwd())  # as celery does, so ./myapp.py is found
    try:
        return getattr(import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"--camera {path}: {exc}") from None
    finally:
        sys.path.remove(os.getcwd())


def reads_broker(args, io):
    """NDJSON for FILE arguments or a piped/redirected stdin; else (--live, -b, -A, --detach, a tty) the broker."""
    if args.files:
        return False
    if args.live or args.broker or args.app or args.detach:
        return True
    try:
        mode = os.fstat(io.stdin.fileno()).st_mode
    except (AttributeError, OSError, ValueError):
        return False  # an in-memory stream: tests, embedding
    return not (stat.S_ISFIFO(mode) or stat.S_ISREG(mode) or stat.S_ISSOCK(mode))


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
    args = ctx.args
    check_options(args)
    source = None
    if reads_broker(args, ctx.io):
        from celops.core.events import EventSource

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


def open_camera(args, out, warn):
    return PolaroidCamera(args) if args.camera else Camera(args, out, warn)


class BrokerRejects:
    """Bad events from the broker: a warning for each of the first BROKER_WARNINGS, then only the count.

    Anyone who can publish to the broker can send them: they must not flood the log.
    """

    def __init__(self, warn):
        self.warn = warn
        self.count = 0

    def __call__(self, where, reason):
        self.count += 1
        if self.count <= BROKER_WARNINGS:
            self.warn(f"bad event from the broker, not applied: {reason}")
        if self.count == BROKER_WARNINGS:
            self.warn("further bad events from the broker are only counted (the snapshots' invalid field)")


class _Stop(Exception):
    """Raised in the main thread by SIGTERM, --duration's SIGALRM, or a failing shutter."""


def snap(args, camera, feed, status):
    """Feed events here, in the main thread; take shots on the timer in another; a last one at the end.

    Reading stays in the main thread so that a signal can interrupt a read
    blocked on an idle pipe or broker, and nothing is left reading stdin
    when the interpreter exits.
    """
    def stop(signum, frame):
        raise _Stop

    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGTERM, signal.SIGALRM)}
    done = threading.Event()
    failure = []
    shutter = threading.Thread(target=_shutter, args=(args, camera, done, failure), name="cev-cam-shutter",
                               daemon=True)
    try:
        if args.duration:
            signal.setitimer(signal.ITIMER_REAL, args.duration)
        shutter.start()
        try:
            feed()
        except _Stop:
            pass
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # stopping already: a second one changes nothing
        signal.setitimer(signal.ITIMER_REAL, 0)
        done.set()
        shutter.join()
        if failure:
            raise failure[0]
        camera.shoot(last=True)
        return status()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        done.set()
        if shutter.is_alive():
            shutter.join(5)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _shutter(args, camera, done, failure):
    """The timer: a shot every --frequency (unless --once), the sink's cleanup hourly."""
    try:
        next_shot = next_cleanup = time.monotonic()
        next_shot += args.frequency
        while True:
            now = time.monotonic()
            if now >= next_cleanup:
                camera.cleanup()
                next_cleanup = now + CLEANUP_INTERVAL
            if not args.once and now >= next_shot:
                camera.shoot()
                next_shot = max(next_shot + args.frequency, now)
            wake = next_cleanup if args.once else min(next_cleanup, next_shot)
            if done.wait(max(0.0, wake - time.monotonic())):
                return
    except BaseException as exc:  # a broken pipe, a full disk: stop the reading, report it there
        failure.append(exc)
        signal.pthread_kill(threading.main_thread().ident, signal.SIGTERM)


def write_pidfile(path):
    """Write our pid; refuse when the file names a process that is still running."""
    refuse_running(path)
    try:
        with open(path, "w") as handle:
            handle.write(f"{os.getpid()}\n")
    except OSError as exc:
        raise cannot_create(path, exc) from None
    atexit.register(_remove_pidfile, path, os.getpid())


def refuse_running(path):
    """UsageError when the pidfile ``path`` names a process that is still running."""
    if not path:
        return
    try:
        with open(path) as existing:
            pid = int(existing.read().strip() or 0)
        if pid:
            os.kill(pid, 0)
            raise UsageError(f"--pidfile {path}: process {pid} is running")
    except (FileNotFoundError, ValueError, ProcessLookupError):
        pass
    except PermissionError:
        raise UsageError(f"--pidfile {path}: a process of another user holds it") from None


def _remove_pidfile(path, pid):
    try:
        with open(path) as handle:
            if int(handle.read().strip() or 0) == pid:
                os.unlink(path)
    except (OSError, ValueError):
        pass


def detach(pidfile, logfile):
    """Double fork into the background; stdout and stderr go to --logfile (or /dev/null).

    The log file is opened before the fork, so that a path that can't be
    written is exit 73 for the user rather than a daemon that says nothing.
    """
    null = os.open(os.devnull, os.O_RDWR)
    try:
        log = os.open(logfile, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644) if logfile else null
    except OSError as exc:
        raise cannot_create(logfile, exc) from None
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    if pidfile:
        write_pidfile(pidfile)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)


def main(argv=None, io=None):
    return cli.execute(build_parser, run, argv, io)
