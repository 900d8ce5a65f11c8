"""Real brokers and workers for the tests: a private redis-server, a private
RabbitMQ vhost, and `celery worker` processes of tests/app.py.

Used by tests/conftest.py and, through its command line, by tests/bats.
Readiness is always checked by pinging, never by sleeping a fixed time.
"""

import base64
import json
import os
import queue
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RABBIT_API = os.environ.get("CELOPS_TEST_RABBIT_API", "http://127.0.0.1:15672/api")
RABBIT_AUTH = ("guest", "guest")
DATABASES = 256  # per private redis-server; tests take them in turn (conftest.empty_db_url), a module-long
# fixture holding one must not see it reused while it runs


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout, what):
    """Poll ``predicate`` until it is true; fail loudly naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} not ready after {timeout}s")


def poll(fetch, accept, timeout, what):
    """``fetch()`` until ``accept`` takes what it returns; returns that (the last value shows on failure)."""
    last = []

    def accepted():
        last[:] = [fetch()]
        return accept(last[0])

    try:
        wait_for(accepted, timeout, what)
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}; last: {last[0]!r}") from None
    return last[0]


class RecordStream:
    """A subprocess's NDJSON stdout, collected by a thread so a test can wait with a timeout."""

    def __init__(self, process):
        self.process = process
        self.records = []
        self._lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self._lines.put(json.loads(line))
        self._lines.put(None)

    def until(self, predicate, timeout=30):
        """Collect records until one satisfies ``predicate``; returns it."""
        deadline = time.monotonic() + timeout
        for record in self.records:
            if predicate(record):
                return record
        while time.monotonic() < deadline:
            try:
                record = self._lines.get(timeout=0.1)
            except queue.Empty:
                continue
            if record is None:
                break
            self.records.append(record)
            if predicate(record):
                return record
        raise AssertionError(f"not seen within {timeout}s; got {[r.get('type') for r in self.records[-20:]]}; "
                             f"stderr: {self.stderr()}")

    def finish(self, timeout=30):
        """Wait for the exit; returns the status (the reader thread has drained stdout by then)."""
        status = self.process.wait(timeout)
        while True:
            record = self._lines.get(timeout=10)
            if record is None:
                return status
            self.records.append(record)

    def interrupt(self):
        self.process.send_signal(signal.SIGINT)
        return self.finish()

    def stderr(self):
        if self.process.stderr is None or self.process.poll() is None:
            return "(running)"
        return self.process.stderr.read().decode()


class RedisServer:
    """A throwaway redis-server on a free loopback port, in its own directory."""

    def __init__(self, directory, port=None, extra_args=()):
        self.directory = directory
        self.port = port or free_port()
        self.extra_args = list(extra_args)
        self.process = None

    def url(self, db=0):
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self):
        os.makedirs(self.directory, exist_ok=True)
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.directory, "--databases", str(DATABASES),
             "--logfile", os.path.join(self.directory, "redis.log"), *self.extra_args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self.ping, 20, f"redis-server on port {self.port}")
        return self

    def ping(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith((b"+PONG", b"-NOAUTH"))  # up, with or without a password
        except OSError:
            return False

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


class RabbitVhost:
    """A private vhost on the running RabbitMQ, made and removed through the management API."""

    def __init__(self, name=None):
        self.name = name or f"celops-test-{uuid.uuid4().hex[:10]}"

    def url(self):
        return f"amqp://guest:guest@127.0.0.1:5672/{self.name}"

    def create(self):
        put = requests.put(f"{RABBIT_API}/vhosts/{self.name}", auth=RABBIT_AUTH, timeout=10)
        put.raise_for_status()
        perms = requests.put(f"{RABBIT_API}/permissions/{self.name}/guest", auth=RABBIT_AUTH, timeout=10,
                             json={"configure": ".*", "write": ".*", "read": ".*"})
        perms.raise_for_status()
        return self

    def delete(self):
        requests.delete(f"{RABBIT_API}/vhosts/{self.name}", auth=RABBIT_AUTH, timeout=10)


class TlsProxy:
    """TLS in front of a plain TCP port on 127.0.0.1 (a broker), with a throwaway certificate.

    The certificate is self-signed for ``names`` (127.0.0.1 and localhost by
    default); ``cert`` is the file to trust (``?ssl_ca_certs=``).
    """

    def __init__(self, target_port, workdir, names="IP:127.0.0.1,DNS:localhost"):
        own = tempfile.mkdtemp(prefix="tls-proxy-", dir=workdir)  # several proxies may share a workdir
        self.cert, key = os.path.join(own, "cert.pem"), os.path.join(own, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=localhost", "-addext", f"subjectAltName={names}",
                        "-keyout", key, "-out", self.cert], check=True, capture_output=True)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(self.cert, key)
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client):
        try:
            secure = self.context.wrap_socket(client, server_side=True)
        except OSError:  # the client refused our certificate
            client.close()
            return
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        threading.Thread(target=_pump, args=(upstream, secure), daemon=True).start()
        _pump(secure, upstream)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.listener.close()


def _pump(source, target):
    """Copy until either side ends, then close both."""
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            target.sendall(data)
    except OSError:
        pass
    finally:
        source.close()
        target.close()


def worker_env(broker_url, transport_options=None, result_backend=None, result_extended=False):
    env = dict(os.environ, CELOPS_TEST_BROKER=broker_url, PYTHONPATH=ROOT)
    if transport_options:
        env["CELOPS_TEST_TRANSPORT_OPTIONS"] = json.dumps(transport_options)
    if result_backend:
        env["CELOPS_TEST_RESULT_BACKEND"] = result_backend
    if result_extended:
        env["CELOPS_TEST_RESULT_EXTENDED"] = "1"
    return env


def ping(broker_url, hostname, transport_options=None, timeout=1.0):
    """True when worker ``hostname`` answers a celery ping on ``broker_url``.

    The ping brings its own connection: celery's broadcast would otherwise hold one from kombu's pool (one per
    URL for the whole process, 10 slots) while taking a second for its producer, so 10 concurrent pings
    (bench start_workers) each held one and waited forever for another.
    """
    from celery import Celery

    app = Celery("celops-test-ping", broker=broker_url, set_as_current=False)
    app.conf.broker_transport_options = transport_options or {}
    try:
        with app.connection_for_write() as connection:
            return bool(app.control.ping(destination=[hostname], timeout=timeout, connection=connection))
    except Exception:
        return False
    finally:
        app.close()


class Worker:
    """A real `celery worker` of tests/app.py (``-E`` unless events=False), in its own process group."""

    def __init__(self, broker_url, name=None, queues=None, concurrency=2, pool="prefork",
                 transport_options=None, logdir=None, events=True, extra_args=(), result_backend=None,
                 result_extended=False, env=None):
        self.broker_url = broker_url
        self.results = {"result_backend": result_backend, "result_extended": result_extended}
        self.hostname = f"{name or 'w'}-{uuid.uuid4().hex[:6]}@celops-test"
        self.queues = queues
        self.concurrency = concurrency
        self.pool = pool
        self.transport_options = transport_options
        self.logfile = os.path.join(logdir or "/tmp", f"{self.hostname}.log")
        self.extra_args = (["-E"] if events else []) + list(extra_args)
        self.env = env or {}  # more environment variables, e.g. CELOPS_TEST_EXTRA_TASK
        self.process = None

    def start(self, timeout=60):
        cmd = [sys.executable, "-m", "celery", "-A", "tests.app", "worker", "-n", self.hostname,
               "-P", self.pool, "-c", str(self.concurrency), "--without-gossip", "--without-mingle",
               "-l", "info", "-f", self.logfile, *self.extra_args]
        if self.queues:
            cmd += ["-Q", ",".join(self.queues)]
        self.process = subprocess.Popen(cmd, cwd=ROOT, env={**worker_env(self.broker_url, self.transport_options, **self.results), **self.env},
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
        deadline = time.monotonic() + timeout
        while not ping(self.broker_url, self.hostname, self.transport_options, timeout=0.5):
            if self.process.poll() is not None:
                raise RuntimeError(f"worker {self.hostname} exited {self.process.returncode}; see {self.logfile}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"worker {self.hostname} did not answer ping; see {self.logfile}")
        return self

    def kill(self, sig=signal.SIGKILL):
        """Signal the whole process group (the pool's children too)."""
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self):
        if self.process is None or self.process.poll() is not None:
            return
        self.kill(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.kill(signal.SIGKILL)
            self.process.wait(5)
        self.kill(signal.SIGKILL)  # stray pool children, if any


def send_tasks(broker_url, queue, task, args, count=1, transport_options=None, **options):
    """Send ``count`` messages of tests.app task ``task`` with ``args`` to ``queue``; return their ids.

    ``options`` go to ``send_task`` (countdown, ...).
    """
    from celery import Celery

    app = Celery("celops-test-send", broker=broker_url, set_as_current=False)
    app.conf.task_send_sent_event = True
    app.conf.broker_transport_options = transport_options or {}
    try:
        return [app.send_task(task, args, queue=queue, **options).id for _ in range(count)]
    finally:
        app.close()


def kombu_event_envelope(event, routing_key="task.succeeded", body=None):
    """A Redis event message (JSON text) exactly as celery's EventDispatcher publishes it.

    ``body`` replaces the base64 of ``event``, to send something malformed.
    """
    body = body if body is not None else base64.b64encode(json.dumps(event).encode()).decode()
    return json.dumps({"body": body, "content-encoding": "utf-8", "content-type": "application/json",
                       "headers": {"hostname": "tester"},
                       "properties": {"delivery_mode": 1, "body_encoding": "base64", "priority": 0,
                                      "delivery_info": {"exchange": "celeryev", "routing_key": routing_key},
                                      "delivery_tag": str(uuid.uuid4())}})


def pattern_subscribers(url):
    """Clients with a pattern subscription, event readers among them (PUBSUB NUMPAT counts patterns)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        return sum(1 for info in client.client_list() if int(info.get("psub", 0)) > 0)
    finally:
        client.close()


def undocumented_fields(record):
    """The top-level fields of ``record`` that celops/records.py does not list for its type."""
    from celops.records import RECORDS

    kind = "event" if record.get("type", "").startswith(("task-", "worker-")) else record.get("type")
    if kind not in RECORDS:
        return [f"type {kind!r}"]
    documented = {name for key in RECORDS[kind]["fields"] for name in key.split(", ")}
    if "..." in documented:  # events carry whatever the worker sent
        return []
    return sorted(set(record) - documented)


def _cli(argv):
    """Shell access for bats: start/stop brokers and workers, printing what to export."""
    command, *rest = argv
    if command == "redis-start":
        server = RedisServer(rest[0]).start()
        print(f"{server.port} {server.process.pid}")
        server.process = None  # leave it running; bats stops it by pid
    elif command == "vhost-create":
        print(RabbitVhost(rest[0] if rest else None).create().url())
    elif command == "vhost-delete":
        RabbitVhost(rest[0]).delete()
    elif command == "worker-start":
        broker_url, logdir, *queues = rest
        worker = Worker(broker_url, logdir=logdir, queues=queues or None).start()
        print(f"{worker.hostname} {worker.process.pid}")
    elif command == "send":
        broker_url, queue, task, args_json, *count = rest
        for task_id in send_tasks(broker_url, queue, task, json.loads(args_json), int(count[0]) if count else 1):
            print(task_id)
    elif command == "check-records":
        undocumented = {f"{record.get('type')}: {field}" for line in sys.stdin if line.strip()
                        for record in [json.loads(line)] for field in undocumented_fields(record)}
        if undocumented:
            raise SystemExit("not in celops/records.py: " + ", ".join(sorted(undocumented)))
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    _cli(sys.argv[1:])
