"""Snapshots of the cluster State on a timer: the lean camera and its sink, celery's Polaroid, the shutter.

What cev-cam runs, and what a command that watches the cluster (cev-top)
reuses: feed events in the main thread with ``snap``, shots come from a
timer thread; a SIGTERM, --duration's alarm or a failing shot ends it with
a last one.
"""

import os
import signal
import sys
import threading
import time

from celops.core.exits import UsageError

CLEANUP_INTERVAL = 3600.0  # seconds, as celery's Polaroid cleanup_freq
BROKER_WARNINGS = 10  # bad events from the broker warned about; the rest only counted


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


def open_camera(args, out, warn=None):
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
