"""One contract, every registered command (present and future), both brokers.

A new command joins by being registered in ``celops.commands.COMMANDS`` and
filling HARMLESS below with an invocation that does nothing lasting (or None
when it never talks to a broker, with the reason); the first test fails
loudly until it does. Each then gets, on Redis and RabbitMQ: a closed port, a
port that accepts and never answers (-t), a failover URL whose first host is
dead, a bad scheme, Ctrl-C while connecting, and the password redacted.
A command that writes records also joins PLENTIFUL: an invocation that writes
more than a pipe holds, for ``| head -1``.
"""

import fcntl
import os
import signal
import socket
import subprocess
import threading

import orjson
import pytest

from celops.commands import COMMANDS
from tests.conftest import BIN, run_bin
from tests.queue_support import publish
from tests.support import RabbitVhost, RedisServer, Worker, free_port

SECRET = "Contract-s3cret"

# command -> arguments after -b URL that do nothing lasting; None: it never talks to a broker.
HARMLESS = {
    "cev-dump": ["--duration", "1"],
    "cev-cam": ["--live", "--once", "--duration", "1"],
    "cev-top": ["--live"],  # connects, then, with no terminal to draw on, exits 78
    "cq-ls": [],
    "cq-len": ["celery"],
    "cq-peek": ["celery"],
    "cq-purge": ["--dry-run", "-Q", "celops-contract-none"],
    "cq-move": ["--dry-run", "-Q", "celops-contract-none", "--to", "celops-contract-other"],
    "cctl": ["ping"],
    "ccheck": ["--check", "broker"],
    "csend": ["-Q", "celops-contract", "tests.app.add"],  # one message, in a private db or vhost only
    "cres": None,  # reads the result backend (--backend), not the broker
}

BROKER_COMMANDS = [name for name in sorted(COMMANDS) if HARMLESS.get(name) is not None]
# A health check's job is to say the broker is down: a crit finding on stdout and exit 3, not an error.
DOWN_IS_A_FINDING = {"ccheck"}


def test_every_registered_command_has_a_harmless_invocation():
    missing = sorted(set(COMMANDS) - set(HARMLESS))
    assert not missing, f"add {missing} to HARMLESS in tests/test_contract.py (None if it never uses a broker)"
    assert not set(HARMLESS) - set(COMMANDS), "HARMLESS names a command that is not registered"


def dead_url(kind, port):
    return f"redis://:{SECRET}@127.0.0.1:{port}/0" if kind == "redis" else f"amqp://guest:{SECRET}@127.0.0.1:{port}//"


def assert_one_clear_line(result, status):
    assert result.status == status, result
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert SECRET not in result.stderr and SECRET.encode() not in result.stdout, result


class BlackHole:
    """A port that accepts connections and never says a word; ``reached`` is set once someone connects."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.reached = threading.Event()
        self.held = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.held.append(connection)
            self.reached.set()

    def close(self):
        self.listener.close()
        for connection in self.held:
            connection.close()


@pytest.fixture
def black_hole():
    hole = BlackHole()
    yield hole
    hole.close()


@pytest.mark.parametrize("kind", ["redis", "amqp"])
@pytest.mark.parametrize("command", BROKER_COMMANDS)
def test_a_closed_port_is_69_in_one_redacted_line(command, kind):
    result = run_bin(command, "-b", dead_url(kind, free_port()), *HARMLESS[command], "-t", "2")
    assert_broker_down(command, result)
    assert "cannot reach broker" in (result.stdout.decode() if command in DOWN_IS_A_FINDING else result.stderr)


def assert_broker_down(command, result):
    """69 in one clear line; for a health check, a crit finding on stdout instead (exit 3)."""
    if command not in DOWN_IS_A_FINDING:
        assert_one_clear_line(result, 69)
        return
    assert result.status == 3 and "Traceback" not in result.stderr, result
    assert {"check": "broker.reachable", "severity": "crit"}.items() <= result.records[0].items(), result
    assert SECRET not in result.stderr and SECRET.encode() not in result.stdout, result


@pytest.mark.parametrize("kind", ["redis", "amqp"])
@pytest.mark.parametrize("command", BROKER_COMMANDS)
def test_a_port_that_never_answers_is_69_after_t(command, kind, black_hole):
    result = run_bin(command, "-b", dead_url(kind, black_hole.port), *HARMLESS[command], "-t", "1")
    assert_broker_down(command, result)
    assert black_hole.reached.is_set()


@pytest.mark.parametrize("kind", ["redis", "amqp"])
@pytest.mark.parametrize("command", BROKER_COMMANDS)
def test_a_failover_list_whose_first_host_is_dead_reaches_the_next(command, kind, request):
    alive = request.getfixturevalue("fresh_redis_url") if kind == "redis" \
        else request.getfixturevalue("rabbit_vhost").url()
    url = f"{dead_url(kind, free_port())};{alive}"
    result = run_bin(command, "-b", url, *HARMLESS[command], "-t", "5")
    assert result.status not in (2, 69, 70), result  # 0, or 1 for a queue that is not there
    assert SECRET not in result.stderr


@pytest.mark.parametrize("command", BROKER_COMMANDS)
def test_a_bad_scheme_is_a_usage_error(command):
    result = run_bin(command, "-b", f"memcache://u:{SECRET}@127.0.0.1:11211", *HARMLESS[command])
    assert_one_clear_line(result, 2)
    assert "unsupported broker URL scheme 'memcache'" in result.stderr


@pytest.mark.parametrize("kind", ["redis", "amqp"])
@pytest.mark.parametrize("command", BROKER_COMMANDS)
def test_ctrl_c_while_connecting_is_130_and_quiet(command, kind, black_hole):
    process = subprocess.Popen([os.path.join(BIN, command), "-b", dead_url(kind, black_hole.port),
                                *HARMLESS[command], "-t", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert black_hole.reached.wait(30), "the command never connected"
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr
    assert b"Traceback" not in stderr and SECRET.encode() not in stderr + stdout, stderr


# command -> (arguments after -b URL that write many records on the PLENTIFUL broker, standard input, streams).
# A streaming command writes until the pipe breaks; the others must write more than PIPE_BYTES past the first line.
PLENTY_QUEUES = [f"celops-plenty-{n}" for n in range(150)]
REVOKED = [{"uuid": f"celops-plenty-{n:04}"} for n in range(300)]
PLENTIFUL = {
    "cev-dump": (["-u", "--wakeup"], None, True),
    "cev-cam": (["--live", "-u", "--wakeup", "--frequency", "0.1"], None, True),
    "cq-ls": ([], None, False),
    "cq-len": ([], None, False),
    "cq-peek": ([PLENTY_QUEUES[0]], None, False),
    "cq-purge": (["--dry-run", "-Q", ",".join(PLENTY_QUEUES)], None, False),
    "cctl": (["revoked", "--each"], None, False),
    "csend": (["-Q", "celops-plenty-sink", "-"], [{"name": "tests.app.add", "args": [1, 2]}] * 100, False),
    "cq-move": (["--dry-run", "-Q", PLENTY_QUEUES[0], "--to", PLENTY_QUEUES[1]], None, False),
    "ccheck": (["-v", "--sample", "0.5"], None, False),
}
DRAWS_A_SCREEN = {"cev-top"}  # writes no records to stdout: it refuses to run without a terminal
PIPE_BYTES = 4096


def test_every_command_that_writes_records_is_plentiful():
    missing = sorted(set(BROKER_COMMANDS) - set(PLENTIFUL) - DRAWS_A_SCREEN)
    assert not missing, f"add {missing} to PLENTIFUL in tests/test_contract.py"


@pytest.fixture(scope="module", params=["redis", "amqp"])
def plentiful(request, tmp_path_factory):
    """A broker of its own with 150 queues (the first holding 100 messages), and a worker that revoked 300 ids."""
    directory = tmp_path_factory.mktemp(f"plentiful-{request.param}")
    if request.param == "redis":
        server = RedisServer(str(directory / "redis")).start()
        request.addfinalizer(server.stop)
        url = server.url(0)
    else:
        vhost = RabbitVhost().create()
        request.addfinalizer(vhost.delete)
        url = vhost.url()
    publish(url, [(queue, 0, (1, 2)) for queue in PLENTY_QUEUES] + [(PLENTY_QUEUES[0], 0, (n, n)) for n in range(99)])
    worker = Worker(url, name="plentiful", queues=["celops-plenty-sink"], concurrency=1, pool="solo",
                    logdir=str(directory)).start()
    request.addfinalizer(worker.stop)
    revoke = run_bin("cctl", "-b", url, "revoke", "-", "-d", worker.hostname, "-t", "10",
                     stdin=b"".join(orjson.dumps(record) + b"\n" for record in REVOKED))
    assert revoke.status == 0, revoke
    return url, worker


def first_line_then_close(argv, stdin_path):
    """``argv | head -1``: a real pipe (one page, the smallest Linux allows), closed after the first line."""
    read_end, write_end = os.pipe()
    fcntl.fcntl(read_end, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    with open(stdin_path or os.devnull, "rb") as stdin:
        process = subprocess.Popen(argv, stdin=stdin, stdout=write_end, stderr=subprocess.PIPE)
    os.close(write_end)
    line = b""
    while not line.endswith(b"\n"):
        byte = os.read(read_end, 1)
        if not byte:
            break
        line += byte
    os.close(read_end)
    try:
        stderr = process.communicate(timeout=60)[1]
    finally:
        if process.poll() is None:
            process.kill()
    return process.returncode, line, stderr.decode()


@pytest.mark.parametrize("command", sorted(PLENTIFUL))
def test_head_1_closes_the_pipe_and_the_command_exits_0_quietly(command, plentiful, tmp_path):
    url, worker = plentiful
    args, stdin, streams = PLENTIFUL[command]
    args = args + (["-d", worker.hostname] if command == "cctl" else [])
    stdin_path = None
    if stdin is not None:
        stdin_path = tmp_path / "input.ndjson"
        stdin_path.write_bytes(b"".join(orjson.dumps(record) + b"\n" for record in stdin))
    argv = [os.path.join(BIN, command), "-b", url, *args]
    if not streams:  # more than the pipe holds after the first line, or the pipe never breaks
        whole = run_bin(command, "-b", url, *args, stdin=stdin_path.read_bytes() if stdin_path else b"")
        # ccheck finds 150 queues with messages and no consumer: crit, exit 3; the others succeed
        assert whole.status == (3 if command == "ccheck" else 0) and len(whole.stdout) > 2 * PIPE_BYTES, whole
    status, line, stderr = first_line_then_close(argv, stdin_path)
    assert line.startswith(b"{") and line.endswith(b"}\n"), line
    assert (status, stderr) == (0, ""), stderr


def test_cres_head_1_closes_the_pipe_and_exits_0_quietly(redis_server):
    """cres reads a result backend, not a broker: 300 unknown ids are 300 PENDING records."""
    ids = [record["uuid"] for record in REVOKED]
    argv = [os.path.join(BIN, "cres"), "--backend", redis_server.url(0), *ids]
    status, line, stderr = first_line_then_close(argv, None)
    assert line.startswith(b"{") and (status, stderr) == (0, ""), (status, line, stderr)
