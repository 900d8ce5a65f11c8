"""Fixtures: real brokers (private Redis, private RabbitMQ vhost) and real workers."""

import io
import itertools
import os
import subprocess
import uuid

import orjson
import pytest
import redis

from tests.support import DATABASES, ROOT, RabbitVhost, RedisServer, Worker

BIN = os.path.join(ROOT, "bin")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = RedisServer(str(tmp_path_factory.mktemp("redis"))).start()
    yield server
    server.stop()


_databases = itertools.cycle(range(1, DATABASES))


def empty_db_url(server):
    """The URL of the private server's next database, emptied first: databases are taken in turn, then
    reused, so one test's leftovers (a poisoned binding, old results) must never meet the next test."""
    url = server.url(next(_databases))
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture
def fresh_redis_url(redis_server):
    """A Redis database of its own for one test (see empty_db_url)."""
    return empty_db_url(redis_server)


@pytest.fixture(scope="session")
def rabbit_vhost():
    vhost = RabbitVhost().create()
    yield vhost
    vhost.delete()


@pytest.fixture(params=["redis", "amqp"])
def broker_url(request):
    """The same test on both transports: a private Redis db, a private vhost."""
    if request.param == "redis":
        return request.getfixturevalue("fresh_redis_url")
    return request.getfixturevalue("rabbit_vhost").url()


@pytest.fixture
def start_worker(tmp_path):
    """Factory: start_worker(broker_url, **options) -> a running, pinged Worker."""
    workers = []

    def start(broker_url, **options):
        worker = Worker(broker_url, logdir=str(tmp_path), **options).start()
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


class Result:
    def __init__(self, status, stdout, stderr):
        self.status = status
        self.stdout = stdout
        self.stderr = stderr

    @property
    def records(self):
        return [orjson.loads(line) for line in self.stdout.splitlines() if line.strip()]

    def __repr__(self):
        return f"<Result {self.status} stdout={self.stdout[:300]!r} stderr={self.stderr[:300]!r}>"


def run_command(main, argv, stdin=b""):
    """Run a command's main() in-process with injected streams."""
    from celops.core.cli import IO

    out, err = io.BytesIO(), io.StringIO()
    status = main(list(argv), io=IO(stdin=io.BytesIO(stdin), stdout=out, stderr=err))
    return Result(status, out.getvalue(), err.getvalue())


def run_bin(name, *args, stdin=b"", env=None, timeout=60):
    """Run bin/NAME as a user would, in a subprocess."""
    proc = subprocess.run([os.path.join(BIN, name), *args], input=stdin, capture_output=True,
                          env=dict(os.environ, **(env or {})), timeout=timeout)
    return Result(proc.returncode, proc.stdout, proc.stderr.decode())


@pytest.fixture
def unique():
    """A short unique name, for queues and keys that must not collide."""
    return f"t{uuid.uuid4().hex[:8]}"


