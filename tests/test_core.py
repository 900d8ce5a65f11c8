"""The thin core: resolution, redaction, NDJSON in and out, exits, fast --help."""

import argparse
import collections
import datetime
import io
import os
import subprocess
import sys
import time
import uuid

import orjson
import pytest

from celops.commands import COMMANDS
from celops.core import cli
from celops.core.broker import Broker, resolve
from celops.core.exits import CelopsError
from celops.core.broker import within as broker_within
from celops.core.ndjson import MAX_LINE_BYTES, Reader, dumps
from celops.core.redact import redact, redact_url
from tests.conftest import run_bin, run_command
from tests.queue_support import publish
from tests.support import ROOT, TlsProxy


# Resolution order ---------------------------------------------------------------

def _args(**kwargs):
    return argparse.Namespace(**{"broker": None, "app": None, **kwargs})


@pytest.mark.parametrize("args, environ, expected", [
    (_args(broker="redis://b/1"), {"CELOPS_BROKER_URL": "redis://c/2", "CELERY_BROKER_URL": "redis://d/3"},
     ("redis://b/1", "--broker")),
    (_args(), {"CELOPS_BROKER_URL": "redis://c/2", "CELERY_BROKER_URL": "redis://d/3"},
     ("redis://c/2", "CELOPS_BROKER_URL")),
    (_args(), {"CELERY_BROKER_URL": "amqp://d//"}, ("amqp://d//", "CELERY_BROKER_URL")),
    (_args(), {}, ("redis://localhost:6379/0", "default")),
])
def test_resolution_order(args, environ, expected):
    broker = resolve(args, environ)
    assert (broker.url, broker.source) == expected


def test_app_broker_and_transport_options(monkeypatch):
    monkeypatch.setenv("CELOPS_TEST_BROKER", "redis://127.0.0.1:1234/7")
    monkeypatch.setenv("CELOPS_TEST_TRANSPORT_OPTIONS", '{"global_keyprefix": "pfx:", "sep": ":"}')
    monkeypatch.chdir(ROOT)
    sys.modules.pop("tests.app", None)
    broker = resolve(_args(app="tests.app"), {})
    sys.modules.pop("tests.app", None)
    assert (broker.url, broker.source) == ("redis://127.0.0.1:1234/7", "--app")
    assert broker.keyprefix == "pfx:" and broker.db == 7
    assert broker.priority_keys("q") == [(0, "pfx:q"), (3, "pfx:q:3"), (6, "pfx:q:6"), (9, "pfx:q:9")]
    assert "celery" in broker.queues
    # an explicit URL still wins, but the app's transport options stay
    broker = resolve(_args(app="tests.app"), {"CELERY_BROKER_URL": "redis://other/0"})
    assert broker.url == "redis://other/0" and broker.keyprefix == "pfx:"


def test_app_with_global_keyprefix_on_a_real_redis(redis_server, unique):
    """cq-ls -A finds a queue the app declared under its global_keyprefix."""
    url = redis_server.url(0)
    env = {"CELOPS_TEST_BROKER": url, "CELOPS_TEST_TRANSPORT_OPTIONS": '{"global_keyprefix": "%s:"}' % unique,
           "PYTHONPATH": ROOT}
    publish = (f"from tests.app import add; add.apply_async((1, 2), queue='{unique}-q')")
    subprocess.run([sys.executable, "-c", publish], cwd=ROOT, env=dict(os.environ, **env), check=True)
    result = run_bin("cq-ls", "-A", "tests.app", env=env)
    assert result.status == 0, result
    assert f"{unique}-q" in [r["queue"] for r in result.records]
    plain = run_bin("cq-ls", "-b", url)
    assert f"{unique}-q" not in [r["queue"] for r in plain.records]


def test_broker_urls_parse():
    assert Broker("amqp://u:p@h:5672/vh", "x").vhost == "vh"
    assert Broker("amqp://u:p@h:5672//", "x").vhost == "/"
    assert Broker("amqps://h", "x").vhost == "/"
    assert Broker("rediss://:p@h:6380/4", "x").db == 4
    with pytest.raises(Exception, match="unsupported broker URL scheme"):
        Broker("sqs://k:s@", "x")


# Redaction ---------------------------------------------------------------------

def test_redact_urls_and_secret_fields():
    assert redact_url("redis://:s3cret@h:6379/0") == "redis://:***@h:6379/0"
    assert redact_url("amqp://user:s3cret@h//") == "amqp://user:***@h//"
    assert redact_url("redis://h:6379/0") == "redis://h:6379/0"
    reply = {"broker": {"alternates": ["amqp://u:s3cret@h2//"], "password": "s3cret", "userid": "u"},
             "broker_url": "redis://:s3cret@h/0", "result_backend": "db+postgresql://u:s3cret@h/db",
             "broker_transport_options": {"sentinel_kwargs": {"password": "s3cret"}}, "n": 3}
    assert "s3cret" not in orjson.dumps(redact(reply)).decode()
    assert redact(reply)["broker"]["userid"] == "u" and redact(reply)["n"] == 3


@pytest.mark.parametrize("url", ["redis://:s3cretpw@127.0.0.1:1/0", "amqp://guest:s3cretpw@127.0.0.1:1//"])
def test_password_never_in_errors(url):
    result = run_bin("cq-ls", "-b", url, "-t", "1")
    assert result.status == 69
    assert "s3cretpw" not in result.stderr + result.stdout.decode()
    assert "***" in result.stderr


class RequirePass:
    """The private Redis with a password for the duration of a test."""

    def __init__(self, redis_server, password):
        import redis

        self.client = redis.Redis.from_url(redis_server.url(0))
        self.password = password
        self.url = redis_server.url(0).replace("redis://", f"redis://:{password}@")

    def __enter__(self):
        self.client.config_set("requirepass", self.password)
        self.client = self.client.__class__.from_url(self.url)
        return self

    def __exit__(self, *exc):
        self.client.config_set("requirepass", "")


def test_password_never_in_output(redis_server):
    publish(redis_server.url(), [("celery", 0, (1, 1))])  # cq-ls lists only queues that exist
    with RequirePass(redis_server, "s3cretpw") as secured:
        result = run_bin("cq-ls", "-b", secured.url)
    assert result.status == 0, result
    assert result.records and all(r["broker"].startswith("redis://:***@") for r in result.records)
    assert b"s3cretpw" not in result.stdout and "s3cretpw" not in result.stderr


def test_redis_auth_refused(redis_server):
    with RequirePass(redis_server, "s3cretpw") as secured:
        result = run_bin("cq-ls", "-b", secured.url.replace("s3cretpw", "wrong"), "-t", "2")
    assert result.status == 69 and "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1 and "wrong" not in result.stderr


def test_rediss_through_tls(redis_server, tmp_path):
    """rediss:// through a TLS proxy: trusted with ?ssl_ca_certs=, refused (69) without."""
    publish(redis_server.url(), [("celery", 0, (1, 1))])  # a queue that exists: an unknown one is exit 1
    with TlsProxy(redis_server.port, str(tmp_path)) as proxy:
        url = f"rediss://127.0.0.1:{proxy.port}/0"
        trusted = run_bin("cq-len", "-b", f"{url}?ssl_ca_certs={proxy.cert}", "celery")
        untrusted = run_bin("cq-len", "-b", url, "celery", "-t", "2")
    assert trusted.status == 0 and [r["queue"] for r in trusted.records] == ["celery"], trusted
    assert untrusted.status == 69 and "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr, untrusted


# Unreachable brokers -------------------------------------------------------------

@pytest.mark.parametrize("url, reason", [
    ("redis://127.0.0.1:1/0", "refused"),
    ("amqp://guest:guest@127.0.0.1:1//", "refused"),
    ("redis://no-such-host.invalid:6379/0", "host not found"),
    ("amqp://guest:guest@no-such-host.invalid:5672//", "host not found"),
    ("amqp://guest:wrong-password@127.0.0.1:5672//", "authentication refused"),
])
def test_unreachable_broker_exits_69_with_one_line(url, reason):
    started = time.monotonic()
    result = run_bin("cq-ls", "-b", url, "-t", "2")
    assert time.monotonic() - started < 2 + 1.5  # interpreter start-up on top of --timeout
    assert result.status == 69, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("cq-ls: error: cannot reach broker "), result
    assert reason.lower() in lines[0].lower()
    assert result.stdout == b""


@pytest.mark.parametrize("scheme", ["amqp", "rediss"])
def test_a_kombu_connect_is_one_attempt(scheme):
    """A broker port that hangs up is reported after ONE connection attempt, not after kombu's 2 s retry."""
    import socket
    import threading

    from celops.core.exits import BrokerUnavailable

    listener = socket.create_server(("127.0.0.1", 0))
    accepted = []

    def hang_up():
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:  # closed: the test is over
                return
            accepted.append(connection)
            connection.close()

    threading.Thread(target=hang_up, daemon=True).start()
    try:
        with pytest.raises(BrokerUnavailable, match="cannot reach broker"):
            Broker(f"{scheme}://guest:guest@127.0.0.1:{listener.getsockname()[1]}/0", "test").kombu(10)
    finally:
        listener.close()
    assert len(accepted) == 1  # every attempt was accepted (and hung up on) before kombu() gave up


def test_rabbitmq_listing_in_a_private_vhost(rabbit_vhost, unique):
    import kombu

    with kombu.Connection(rabbit_vhost.url()) as connection:
        kombu.Queue(unique, channel=connection.default_channel).declare()
    result = run_bin("cq-ls", "-b", rabbit_vhost.url())
    assert result.status == 0, result
    assert unique in [r["queue"] for r in result.records]
    assert all(r["broker"].startswith("amqp://guest:***@") for r in result.records)


# NDJSON writer ----------------------------------------------------------------------

Point = collections.namedtuple("Point", "x y")


def test_writer_encodings():
    when = datetime.datetime(2026, 11, 22, 3, 40, 1, tzinfo=datetime.timezone.utc)
    record = {"when": when, "ids": {"b"}, "pair": (1, 2), "text": b"hi", "blob": b"\xff\x00",
              "id": uuid.UUID(int=1), "delta": datetime.timedelta(seconds=1.5), "point": Point(3, 4)}
    line = dumps(record)
    assert line.endswith(b"\n") and line.count(b"\n") == 1 and b" " not in line
    decoded = orjson.loads(line)
    assert decoded == {"when": "2026-11-22T03:40:01+00:00", "ids": ["b"], "pair": [1, 2], "text": "hi",
                       "blob": "/wA=", "id": "00000000-0000-0000-0000-000000000001", "delta": 1.5,
                       "point": [3, 4]}
    assert b"__type__" not in line


# NDJSON reader, through the shared entry wrapper -------------------------------------------

def _echo_parser():
    parser = cli.command_parser("echo-records", "Echo records.", broker=False)
    cli.add_input_options(parser)
    return parser


def _echo(ctx):
    reader = ctx.reader()
    for record in reader.records():
        ctx.out.write(record)
    return 65 if reader.bad_lines else 0


def echo(argv, stdin):
    return run_command(lambda argv, io: cli.execute(_echo_parser, _echo, argv, io), argv, stdin)


def test_reader_reports_bad_lines_and_goes_on():
    stdin = b'{"a": 1}\n\nnot json\n[1, 2]\n{"b": 2}\n' + b"x" * (MAX_LINE_BYTES + 10) + b'\n{"c": 3}\n'
    result = echo([], stdin)
    assert result.status == 65
    assert result.records == [{"a": 1}, {"b": 2}, {"c": 3}]
    errors = result.stderr.splitlines()
    assert errors[0].startswith("echo-records: <stdin>:3: not JSON")
    assert errors[1] == "echo-records: <stdin>:4: not a JSON object but list"
    assert errors[2] == f"echo-records: <stdin>:6: line longer than {MAX_LINE_BYTES} bytes"
    assert len(errors) == 3


def test_reader_strict_stops_at_first_bad_line(tmp_path):
    path = tmp_path / "in.ndjson"
    path.write_bytes(b'{"a": 1}\n{oops\n{"b": 2}\n')
    result = echo(["--strict", str(path)], b"")
    assert result.status == 65
    assert result.records == [{"a": 1}]
    assert result.stderr == f"echo-records: error: {path}:2: not JSON: " + result.stderr.split("not JSON: ")[1]


def test_reader_files_and_stdin_and_missing_file(tmp_path):
    path = tmp_path / "a.ndjson"
    path.write_bytes(b'{"from": "file"}\n')
    result = echo([str(path), "-", str(tmp_path / "missing")], b'{"from": "stdin"}\n')
    assert result.records == [{"from": "file"}, {"from": "stdin"}]
    assert result.status == 65 and "missing: No such file or directory" in result.stderr


def test_usage_error_exits_2():
    result = echo(["--no-such-option"], b"")
    assert result.status == 2
    assert result.stderr.startswith("echo-records: error: unrecognized arguments: --no-such-option")


def test_unexpected_error_is_one_line_without_debug_and_a_traceback_with():
    def boom(ctx):
        raise RuntimeError("amqp://u:s3cret@h// exploded")

    def main(argv, io):
        return cli.execute(_echo_parser, boom, argv, io)

    quiet = run_command(main, [])
    assert quiet.status == 70 and quiet.stderr == (
        "echo-records: error: internal error: RuntimeError: amqp://u:***@h// exploded (--debug shows where)\n")
    loud = run_command(main, ["--debug"])
    assert loud.status == 70 and "Traceback" in loud.stderr
    prefix = run_command(main, ["--debu"])  # argparse takes the prefix: so must the wrapper
    assert prefix.status == 70 and "Traceback" in prefix.stderr


class _CountingRaw(io.RawIOBase):
    """stdout as Python makes it under PYTHONUNBUFFERED: unbuffered, a system call per write."""

    def __init__(self):
        self.writes, self.data = 0, b""

    def writable(self):
        return True

    def write(self, data):
        self.writes += 1
        self.data += bytes(data)
        return len(data)


def test_records_are_block_buffered_whatever_the_stream_does():
    from celops.core.ndjson import BLOCK_BYTES, Writer

    raw = _CountingRaw()
    writer = Writer(raw)
    for n in range(2000):
        writer.write({"n": n, "pad": "x" * 100})
    writer.flush()
    assert raw.writes <= len(raw.data) // BLOCK_BYTES + 1 and raw.data.count(b"\n") == 2000
    raw = _CountingRaw()
    writer = Writer(raw, flush_each=True)  # a terminal or -u: every record at once
    writer.write({"n": 1})
    assert raw.writes == 1


@pytest.mark.parametrize("ending", [KeyboardInterrupt, RuntimeError, lambda: CelopsError("it broke")])
def test_records_written_before_a_failure_are_still_written(ending):
    def fails_after_two(ctx):
        ctx.out.write({"n": 1})
        ctx.out.write({"n": 2})
        raise ending()

    result = run_command(lambda argv, io: cli.execute(_echo_parser, fails_after_two, argv, io), [])
    assert result.stdout == b'{"n":1}\n{"n":2}\n' and result.status in (130, 70, 1)


def test_a_missing_module_is_a_missing_dependency_not_a_broken_broker():
    def needs_hiredis(ctx):
        from celops.core.broker import within

        def connect():
            import celops_no_such_module  # noqa: F401
        within(1.0, connect, "redis://:pw@localhost:6379/0")

    result = run_command(lambda argv, io: cli.execute(_echo_parser, needs_hiredis, argv, io), [])
    assert result.status == 78, result
    assert "'celops_no_such_module' is not installed" in result.stderr and "cannot reach" not in result.stderr


def test_an_unreachable_broker_is_said_once():
    from celops.core.exits import BrokerUnavailable

    def connect():
        raise BrokerUnavailable("redis://:pw@h:6999/0", "timed out")

    with pytest.raises(BrokerUnavailable) as caught:
        broker_within(1.0, connect, "redis://:pw@h:6999/0")
    assert str(caught.value) == "cannot reach broker redis://:***@h:6999/0: timed out"


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e308", "0", "-1"])
def test_numbers_are_finite_and_in_range(value):
    with pytest.raises(argparse.ArgumentTypeError):
        cli.positive_float(value)


@pytest.mark.parametrize("text, problem", [("", "empty"), ("  ", "blank"), (" q", "leading or trailing space in"),
                                           ("a\x00b", "control character in"), ("q1", None)])
def test_name_problems(text, problem):
    assert cli.name_problem(text) == problem


@pytest.mark.parametrize("text", ["", ",", "a,,b", "a, b", "a,"])
def test_a_list_of_names_never_holds_an_empty_one(text):
    with pytest.raises(argparse.ArgumentTypeError):
        cli.name_list("queue name")(text)


@pytest.mark.parametrize("url, says", [
    ("redis://127.0.0.1:notaport/0", "bad broker URL"),
    ("redis://[::1", "bad broker URL"),
    ("redis://:s3cret@127.0.0.1:6379/abc", "the Redis database must be a number"),
    ("ftp://h/", "unsupported broker URL scheme"),
])
def test_bad_broker_urls_are_usage_errors(url, says):
    from celops.core.broker import Broker
    from celops.core.exits import UsageError

    with pytest.raises(UsageError) as caught:
        Broker(url, "--broker")
    assert says in str(caught.value) and "s3cret" not in str(caught.value)


# Fast start ------------------------------------------------------------------------------

HEAVY = ("celery", "kombu", "redis", "requests", "amqp")


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_help_and_version_import_nothing_heavy(command, flag):
    code = (
        "import io, sys\n"
        f"from celops.commands.{COMMANDS[command]} import main\n"
        "from celops.core.cli import IO\n"
        f"status = main([{flag!r}], io=IO(stdout=io.BytesIO(), stderr=io.StringIO()))\n"
        f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "assert status == 0, status\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_fanout_topic_follows_kombu():
    assert Broker("redis://h/2", "x").fanout_topic("celeryev") == "/2.celeryev"
    options = {"fanout_prefix": "{db}:fan.", "global_keyprefix": "p:"}
    assert Broker("redis://h/3", "x", transport_options=options).fanout_topic("celeryev") == "p:3:fan.celeryev"
    assert Broker("redis://h/3", "x", transport_options={"fanout_prefix": False}).fanout_topic("x") == "x"


def test_reader_values_plain_lines_records_and_json_strings():
    reports = []
    stdin = io.BytesIO(b'plain-id\n{"uuid": "from-record"}\n"from-jq-without-r"\n[1, 2]\n\xff\xfe\n{"other": 1}\n')
    reader = Reader(["-"], stdin, reports.append)
    assert list(reader.values(["uuid"])) == ["plain-id", "from-record", "from-jq-without-r"]
    assert reports == ["<stdin>:4: a JSON list, not a record or a name", "<stdin>:5: not UTF-8 text",
                       "<stdin>:6: no uuid field"]


def test_reader_values_reject_what_no_queue_or_task_is_named():
    """Issue 11: garbage on stdin became queue names and task ids sent to workers."""
    reports = []
    stdin = io.BytesIO(b'\xef\xbb\xbf{"type":"queue","queue":"q1"}\n{"queue":""}\n\x00\n42\nnull\n'
                       b'not json {\n{"queue": 5}\n{broken\nq2\n"a\\tb"\n-1.5e3\ntrue\n')
    reader = Reader(["-"], stdin, reports.append)
    assert list(reader.values(["queue"])) == ["q1", "q2"]
    assert [report.split(":", 2)[1] for report in reports] == ["2", "3", "4", "5", "6", "7", "8", "10", "11", "12"]
    assert reports[0] == "<stdin>:2: empty name: ''" and "control character" in reports[1]
    assert "bare JSON value (42)" in reports[2] and "broken JSON" in reports[4] and "is a int" in reports[5]
    assert reader.bad_lines == 10
    ids = Reader(["-"], io.BytesIO(b"a b\nu-1\n"), reports.append)
    assert list(ids.values(["uuid"], ids=True)) == ["u-1"] and "blank inside a task id" in reports[-1]


# Layering ------------------------------------------------------------------------------------

def _imported_modules(path):
    import ast

    with open(path, encoding="utf-8") as source:
        tree = ast.parse(source.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


@pytest.mark.parametrize("package", ["core", "top"])
def test_shared_code_never_imports_a_command(package):
    """What commands share lives in core (or top): a command's module is its own, private to it."""
    folder = os.path.join(ROOT, "celops", package)
    offenders = [f"{name}: {module}" for name in sorted(os.listdir(folder)) if name.endswith(".py")
                 for module in _imported_modules(os.path.join(folder, name)) if module.startswith("celops.commands")]
    assert not offenders


# AMQP field tables (amqpwire) ---------------------------------------------------------

def test_amqp_tables_round_trip():
    from celops.core.amqpwire import parse_table, table

    value = {"ticket": "c0ffee", "clock": 7, "expires": 1795328179.25, "big": 2 ** 40, "neg": -5, "yes": True,
             "none": None, "nested": {"list": [1, "two", {"three": 3.0}]}, "raw": b"\x00\xff"}
    encoded = table(value)
    assert parse_table(encoded) == (value, len(encoded))


def test_amqp_table_types_rabbitmq_sends():
    """RabbitMQ's letters: 's' is a signed 16-bit int, 'l' a signed 64-bit one, 'D' a decimal."""
    from struct import pack

    from celops.core.amqpwire import parse_table

    items = (b"\x01a" + b"s" + pack(">h", -2) + b"\x01b" + b"l" + pack(">q", -1000)
             + b"\x01c" + b"D" + pack(">Bi", 2, 314) + b"\x01d" + b"T" + pack(">Q", 1700000000)
             + b"\x01e" + b"B" + b"\xff" + b"\x01f" + b"u" + pack(">H", 65535))
    parsed, end = parse_table(pack(">I", len(items)) + items)
    assert parsed == {"a": -2, "b": -1000, "c": 3.14, "d": 1700000000, "e": 255, "f": 65535}
    assert end == 4 + len(items)
