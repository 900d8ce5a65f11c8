"""What a user gets from `pip install celops` alone: declared dependencies, a true python_requires.

`make test` installs the test extras, which bring in packages (``packaging``,
for one) that a plain install may lack; a command that imports one of those
would work here and fail for users. So the package is installed once, with no
extras, into a venv of its own, and every command runs from it against the real
brokers on every URL scheme: plain and TLS (through a self-signed proxy that
the URL trusts with ``?ssl_ca_certs=``), Redis and RabbitMQ.
"""

import configparser
import os
import subprocess
import sys

import pytest

from celops.commands import COMMANDS, TOOLS
from tests.support import ROOT, TlsProxy

AMQP_PORT = 5672

# One call per command, each harmless on a shared broker: they read, or say what they would do.
CALLS = [
    ["cq-ls"],
    ["cq-len"],
    ["cq-peek", "celery", "-n", "1"],
    ["cq-purge", "-Q", "celery", "--dry-run"],
    ["cctl", "ping", "-t", "1"],
    ["csend", "proj.tasks.add", "--args", "[1, 2]", "--dry-run"],
    ["cev-dump", "--duration", "0.5"],
    ["cev-cam", "--live", "--duration", "0.5"],
]
# 0 ok, 1 no replies (cctl ping with no worker on the broker); nothing else.
ACCEPTED = {0, 1}


@pytest.fixture(scope="module")
def plain_venv(tmp_path_factory):
    """A venv with celops and only its declared runtime dependencies."""
    venv = tmp_path_factory.mktemp("plain-venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, ROOT], check=True, capture_output=True)
    return venv / "bin"


@pytest.fixture(scope="module")
def scheme_urls(redis_server, rabbit_vhost, tmp_path_factory):
    """Every URL scheme celops speaks, on the private test brokers."""
    with TlsProxy(redis_server.port, str(tmp_path_factory.mktemp("redis-tls"))) as redis_tls, \
            TlsProxy(AMQP_PORT, str(tmp_path_factory.mktemp("amqp-tls"))) as amqp_tls:
        vhost = rabbit_vhost.url().rsplit("/", 1)[1]
        yield {
            "redis": redis_server.url(0),
            "rediss": f"rediss://127.0.0.1:{redis_tls.port}/0?ssl_ca_certs={redis_tls.cert}",
            "amqp": rabbit_vhost.url(),
            "amqps": f"amqps://guest:guest@127.0.0.1:{amqp_tls.port}/{vhost}?ssl_ca_certs={amqp_tls.cert}",
        }


@pytest.mark.parametrize("scheme", ["redis", "rediss", "amqp", "amqps"])
def test_every_command_runs_from_a_plain_install(plain_venv, scheme_urls, scheme):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("CELOPS_", "CELERY_"))}
    env["PYTHONPATH"] = ""  # the installed package, not this checkout
    for call in CALLS:
        result = subprocess.run([str(plain_venv / call[0]), "-b", scheme_urls[scheme], *call[1:]],
                                capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)
        assert result.returncode in ACCEPTED, (scheme, call, result.returncode, result.stderr)
        assert "No module named" not in result.stderr and "not installed" not in result.stderr, (call, result)


def test_python_requires_is_what_the_code_needs():
    """vermin reads the code for the oldest Python it runs on; setup.cfg must not promise an older one."""
    config = configparser.ConfigParser()
    config.read(os.path.join(ROOT, "setup.cfg"))
    declared = config["options"]["python_requires"].strip().lstrip(">=")
    result = subprocess.run([os.path.join(os.path.dirname(sys.executable), "vermin"), "--no-tips", "--violations", f"-t={declared}-",
                             os.path.join(ROOT, "celops")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_running_from_a_checkout_without_dependencies_says_so(tmp_path):
    """The README's PATH=$PWD/bin:$PATH with a bare python3: a missing module, not "broker down" (exit 78)."""
    venv = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    result = subprocess.run([str(venv / "bin" / "python"), "-m", "celops.commands", "cq-len", "-b",
                             "redis://127.0.0.1:1/0"], capture_output=True, text=True, cwd=ROOT,
                            env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == 78, result
    assert "is not installed" in result.stderr and "cannot reach" not in result.stderr, result


@pytest.mark.parametrize("shell, registration", [("bash", "-F _celops_rejoined cq-len"),
                                                 ("zsh", "compdef _shtab_cq_len -N cq-len")])
def test_celops_completion_finds_the_installed_scripts(plain_venv, shell, registration):
    """pip puts the scripts under the venv's share/; celops-completion prints them from there."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run([str(plain_venv / "celops-completion"), shell], capture_output=True, text=True,
                            timeout=60, env=env, cwd="/")
    assert result.returncode == 0, result.stderr
    assert registration in result.stdout and result.stdout.count("AUTOMATICALLY GENERATED") == len(COMMANDS) + len(TOOLS)
