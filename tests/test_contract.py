"""One contract, every registered command (present and future), both brokers.

A new command joins by being registered in ``celops.commands.COMMANDS`` and
filling HARMLESS below with an invocation that does nothing lasting (or None
when it never talks to a broker, with the reason); the first test fails
loudly until it does. Each then gets, on Redis and RabbitMQ: a closed port, a
port that accepts and never answers (-t), a failover URL whose first host is
dead, a bad scheme, Ctrl-C while connecting, and the password redacted.
"""

import os
import signal
import socket
import subprocess
import threading

import pytest

from celops.commands import COMMANDS
from tests.conftest import BIN, run_bin
from tests.support import free_port

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
