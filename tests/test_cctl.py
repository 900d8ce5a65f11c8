"""cctl against real workers on Redis and RabbitMQ, checked against celery's own inspect/control."""

import json
import subprocess
import sys
import time
import uuid

import orjson
import pytest
import redis
import requests

from celops.commands.cctl import main
from celops.core.broadcast import open_mailbox
from celops.core.broker import Broker
from celops.core.redact import redact
from tests import conftest
from tests.conftest import run_bin, run_command
from tests.support import (RABBIT_API, RABBIT_AUTH, ROOT, RabbitVhost, TlsProxy, Worker, poll, send_tasks, wait_for,
                           worker_env)


class Cluster:
    """One prefork worker (concurrency 2) of tests/app.py on its own queue, shared by a module."""

    def __init__(self, transport, url, worker, queue):
        self.transport = transport
        self.url = url
        self.worker = worker
        self.queue = queue

    def cctl(self, *argv, stdin=b""):
        return run_command(main, ["-b", self.url, *argv], stdin=stdin)

    def to_worker(self, *argv, stdin=b""):
        return self.cctl(*argv, "-d", self.worker.hostname, "-t", "10", stdin=stdin)

    def send(self, task, args=(), **options):
        return send_tasks(self.url, self.queue, task, args, **options)[0]

    def celery(self, *argv):
        """celery's own CLI, --json, against this worker."""
        proc = subprocess.run([sys.executable, "-m", "celery", "-A", "tests.app", *argv, "-d", self.worker.hostname,
                               "-t", "10", "--json"], cwd=ROOT, env=worker_env(self.url), capture_output=True,
                              timeout=60)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)


@pytest.fixture(scope="module", params=["redis", "amqp"])
def cluster(request, tmp_path_factory):
    vhost = None
    if request.param == "redis":
        server = request.getfixturevalue("redis_server")
        # a password on a server without one: the default user accepts any, so it must be redacted
        url = conftest.empty_db_url(server).replace("redis://", "redis://default:s3cret@")
    else:
        vhost = RabbitVhost().create()
        url = vhost.url()
    queue = f"cctl-{uuid.uuid4().hex[:8]}"
    worker = Worker(url, name="cctl", queues=[queue], logdir=str(tmp_path_factory.mktemp("cctl"))).start()
    yield Cluster(request.param, url, worker, queue)
    worker.stop()
    if vhost:
        vhost.delete()


def replies(result):
    assert result.status == 0, result
    return [record for record in result.records if record["type"] == "reply"]


def only_reply(result):
    (record,) = replies(result)
    return record["reply"]


def poll_worker(cluster, argv, predicate, what, timeout=20):
    """Run cctl until ``predicate(records)`` holds; returns those records."""
    return poll(lambda: cluster.to_worker(*argv).records, predicate, timeout, what)


def listing(task_id):
    """A ``poll_worker`` predicate: some --each record is this task."""
    return lambda records: any(record.get("uuid") == task_id for record in records)


# ---------------------------------------------------------------- agreement with celery inspect

@pytest.mark.parametrize("command", ["ping", "registered", "active_queues", "conf", "report", "stats", "revoked",
                                     "active", "reserved", "scheduled"])
def test_reply_agrees_with_celery_inspect(cluster, command):
    ours = cluster.to_worker(command)
    record = replies(ours)[0]
    assert record["command"] == command
    assert record["hostname"] == record["worker"] == cluster.worker.hostname
    assert isinstance(record["received"], float) and abs(record["received"] - time.time()) < 60
    theirs = redact(cluster.celery("inspect", command)[cluster.worker.hostname])
    if command == "stats":  # counters move between the two calls; the shape and identity must not
        assert record["reply"].keys() == theirs.keys()
        for key in ("pid", "pool.implementation", "pool.max-concurrency", "broker.hostname", "broker.transport"):
            head, _, tail = key.partition(".")
            assert (record["reply"][head][tail] if tail else record["reply"][head]) == \
                   (theirs[head][tail] if tail else theirs[head])
    elif command == "revoked":
        assert sorted(record["reply"]) == sorted(theirs)
    else:
        assert record["reply"] == theirs


def test_missing_workers_are_named_on_any_stderr(cluster):
    """Cron and CI read a pipe: who did not answer is said there too; the count stays a terminal's courtesy."""
    import io

    from celops.core.cli import IO

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stderr = Terminal()
    argv = ["-b", cluster.url, "ping", "-d", f"{cluster.worker.hostname},nobody@nowhere", "-t", "0.5"]
    assert main(argv, io=IO(stdin=io.BytesIO(), stdout=io.BytesIO(), stderr=stderr)) == 1
    assert stderr.getvalue() == "1 node replied\ncctl: no reply from nobody@nowhere within 0.5s\n"
    piped = cluster.cctl(*argv[2:])
    assert piped.status == 1 and piped.stderr == "cctl: no reply from nobody@nowhere within 0.5s\n"
    assert [record["worker"] for record in piped.records] == [cluster.worker.hostname]
    nobody = cluster.cctl("ping", "-d", "ghost@nowhere", "-t", "0.5")
    assert (nobody.status, nobody.stdout, nobody.stderr) == (1, b"", "cctl: no reply from ghost@nowhere within 0.5s\n")
    shortfall = cluster.cctl("ping", "--expect", "2", "-t", "0.5")
    assert shortfall.status == 1 and shortfall.stderr == "cctl: 1 of 2 expected nodes replied within 0.5s\n"


def test_revoke_by_stamped_headers_sends_what_celery_sends(cluster):
    """celery's CLI sends KEY=VALUE strings and the worker's reply shows what it made of them."""
    ours = only_reply(cluster.to_worker("revoke_by_stamped_headers", "mystamp=1", "other=x"))
    (theirs,) = cluster.celery("control", "revoke_by_stamped_headers", "mystamp=1", "other=x")
    assert ours == theirs[cluster.worker.hostname]
    assert ours == {"ok": "headers {'mystamp': '1', 'other': 'x'} flagged as revoked, but not terminated"}


def test_control_reply_agrees_with_celery_control(cluster):
    ours = only_reply(cluster.to_worker("rate_limit", "tests.app.fail", "7/m"))
    (theirs,) = cluster.celery("control", "rate_limit", "tests.app.fail", "7/m")
    assert ours == theirs[cluster.worker.hostname] == {"ok": "new rate limit set successfully"}


def test_no_password_in_stats_or_conf(cluster):
    output = cluster.to_worker("stats").stdout + cluster.to_worker("conf", "--include-defaults").stdout
    assert b'"broker_url"' in output and b'"alternates"' in output
    secret = b"s3cret" if cluster.transport == "redis" else b"guest@"
    assert secret not in output
    assert b'"password":"guest"' not in output


# ---------------------------------------------------------------- tasks: active, scheduled, revoke

def test_active_then_revoke_terminate(cluster):
    task_id = cluster.send("tests.app.sleep", (60,))
    records = poll_worker(cluster, ["active", "--each"], listing(task_id), "the sleep task running")
    (item,) = [record for record in records if record.get("uuid") == task_id]
    assert item["name"] == "tests.app.sleep" and item["worker"] == cluster.worker.hostname
    assert "reply" not in item

    reply = only_reply(cluster.to_worker("revoke", task_id, "--terminate", "--signal", "KILL"))
    assert task_id in reply["ok"]
    poll_worker(cluster, ["active"], lambda records: records and records[0]["reply"] == [], "the task killed")
    revoked = cluster.to_worker("revoked", "--each").records
    assert task_id in {record["uuid"] for record in revoked}


def test_terminate_takes_active_records_from_stdin(cluster):
    task_id = cluster.send("tests.app.sleep", (60,))
    records = poll_worker(cluster, ["active", "--each"], listing(task_id), "the sleep task running")
    stdin = b"".join(orjson.dumps(record) + b"\n" for record in records)
    result = cluster.to_worker("terminate", "SIGKILL", "-", stdin=stdin)
    assert task_id in only_reply(result)["ok"]
    poll_worker(cluster, ["active"], lambda records: records and records[0]["reply"] == [], "the task killed")


def test_scheduled_countdown_task(cluster):
    task_id = cluster.send("tests.app.add", (2, 2), countdown=300)
    records = poll_worker(cluster, ["scheduled", "--each"], listing(task_id), "the countdown task scheduled")
    (item,) = [record for record in records if record.get("uuid") == task_id]
    assert item["name"] == "tests.app.add" and item["eta"] and item["uuid"] == item["id"]
    only_reply(cluster.to_worker("revoke", task_id))


# ---------------------------------------------------------------- control commands, confirmed

def test_rate_limit_and_time_limit_are_confirmed(cluster):
    assert only_reply(cluster.to_worker("rate_limit", "tests.app.add", "10/s")) == \
        {"ok": "new rate limit set successfully"}
    assert only_reply(cluster.to_worker("time_limit", "tests.app.add", "5", "9")) == \
        {"ok": "time limits set successfully"}
    registered = only_reply(cluster.to_worker("registered", "rate_limit", "soft_time_limit", "time_limit"))
    assert "tests.app.add [rate_limit=10/s soft_time_limit=5.0 time_limit=9.0]" in registered


def test_add_consumer_shows_in_active_queues(cluster, unique):
    assert only_reply(cluster.to_worker("add_consumer", unique)) == {"ok": f"add consumer {unique}"}
    poll_worker(cluster, ["active_queues"], lambda records: unique in {q["name"] for q in records[0]["reply"]},
         "the new queue consumed")
    assert only_reply(cluster.to_worker("cancel_consumer", unique)) == {"ok": f"no longer consuming from {unique}"}


# ---------------------------------------------------------------- reply collection

def test_destination_returns_early(cluster):
    started = time.monotonic()
    result = cluster.cctl("ping", "-d", cluster.worker.hostname, "-t", "30")
    assert time.monotonic() - started < 10
    assert only_reply(result) == {"ok": "pong"}


def test_expect_shortfall_exits_1(cluster):
    result = cluster.cctl("ping", "--expect", "2", "-t", "0.5")
    assert result.status == 1 and len(result.records) == 1
    missing = cluster.cctl("ping", "-d", f"{cluster.worker.hostname},nobody@nowhere", "-t", "0.5")
    assert missing.status == 1 and [r["worker"] for r in missing.records] == [cluster.worker.hostname]
    assert cluster.cctl("status", "--expect", "1").status == 0


def test_ids_from_stdin_plain_ndjson_and_bad_lines(cluster):
    ids = [str(uuid.uuid4()) for _ in range(6)]
    stdin = "\n".join([
        ids[0],
        json.dumps({"uuid": ids[1], "id": "not-this"}),
        json.dumps({"id": ids[2]}),
        "{not json",
        json.dumps({"task_id": ids[3]}),
        json.dumps({"request": {"id": ids[4]}}),
        json.dumps({"name": "no id here"}),
        "",
        ids[5],
    ]).encode()
    result = cluster.to_worker("revoke", "-", "--batch-size", "4", stdin=stdin)
    assert result.status == 65
    assert "<stdin>:4: not JSON" in result.stderr and "<stdin>:7: no uuid or id or task_id or request.id field" \
        in result.stderr
    assert len(result.records) == 2  # 6 ids in batches of 4: two broadcasts
    revoked = {record["uuid"] for record in cluster.to_worker("revoked", "--each").records}
    assert set(ids) <= revoked

    picked = cluster.to_worker("query_task", "-", "--id-field", "task.id", stdin=b'{"task": {"id": "x1"}}\n')
    assert picked.status == 0 and replies(picked)[0]["reply"] == {}


def test_stale_replies_are_ignored(cluster):
    """A reply that carries another request's ticket is dropped, ours comes through."""
    broker = Broker(cluster.url, "test")
    with open_mailbox(broker, 5) as mailbox:
        ticket = mailbox.request("ping", {}, [cluster.worker.hostname], expires_in=5)
        inject_reply(cluster, mailbox, "an-old-ticket", {"ghost@nowhere": {"ok": "pong"}})
        got = list(mailbox.replies(time.monotonic() + 3))  # the stale reply was queued before we read
    assert got == [(ticket, cluster.worker.hostname, {"ok": "pong"})]


def test_a_broadcast_and_its_replies_larger_than_a_frame(cluster):
    """5000 ids in one broadcast: the request and each reply span several AMQP frames (128 KiB each)."""
    ids = [str(uuid.uuid4()) for _ in range(5000)]
    result = cluster.to_worker("revoke", "-", "--batch-size", "5000", stdin="\n".join(ids).encode())
    reply = only_reply(result)["ok"]
    assert len(reply) > 131072 and all(task_id in reply for task_id in ids)


@pytest.mark.parametrize("cluster", ["amqp"], indirect=True)
def test_no_reply_queue_left_on_rabbitmq(cluster):
    """Our reply queue goes when cctl ends, after replies and after a timeout alike."""
    assert cluster.cctl("ping", "-d", cluster.worker.hostname).status == 0
    assert cluster.cctl("ping", "-d", "nobody@nowhere", "-t", "0.3").status == 1
    vhost = cluster.url.rsplit("/", 1)[1]
    queues = requests.get(f"{RABBIT_API}/queues/{vhost}?columns=name", auth=RABBIT_AUTH, timeout=10).json()
    assert [queue["name"] for queue in queues if queue["name"].endswith(".reply.celery.pidbox")] == []


@pytest.mark.parametrize("cluster", ["amqp"], indirect=True)
def test_amqps_and_an_untrusted_certificate(cluster, tmp_path):
    """amqps:// through a TLS proxy: trusted with ?ssl_ca_certs=, refused (69) without."""
    vhost = cluster.url.rsplit("/", 1)[1]
    with TlsProxy(5672, str(tmp_path)) as proxy:
        url = f"amqps://guest:guest@127.0.0.1:{proxy.port}/{vhost}"
        trusted = run_bin("cctl", "-b", f"{url}?ssl_ca_certs={proxy.cert}", "ping", "-d", cluster.worker.hostname)
        untrusted = run_bin("cctl", "-b", url, "ping", "-t", "2")
    assert only_reply(trusted) == {"ok": "pong"}
    assert untrusted.status == 69 and "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr, untrusted


@pytest.mark.parametrize("credentials, path, reason", [
    ("guest:wrong-pw", "VHOST", "authentication refused"),
    ("guest:guest", "no-such-vhost", "NOT_ALLOWED"),
])
def test_rabbitmq_refusals_are_69_in_one_line(rabbit_vhost, credentials, path, reason):
    url = f"amqp://{credentials}@127.0.0.1:5672/{path.replace('VHOST', rabbit_vhost.name)}"
    result = run_bin("cctl", "-b", url, "ping", "-t", "2")
    assert result.status == 69, result
    (line,) = result.stderr.splitlines()
    assert line.startswith("cctl: error: cannot reach broker amqp://guest:***@") and reason in line
    assert "wrong-pw" not in result.stderr


def inject_reply(cluster, mailbox, ticket, body):
    """Publish a reply as a worker would, to the session's reply queue."""
    from kombu import Connection
    from kombu.pidbox import Mailbox

    with Connection(cluster.url) as connection:
        Mailbox("celery", type="fanout")(connection)._publish_reply(
            body, "reply.celery.pidbox", mailbox.oid, ticket, serializer="json")


# ---------------------------------------------------------------- cctl call: custom commands

def test_call_a_custom_control_command(cluster):
    """The workers guide's increase_prefetch_count (@control_command), read back by an @inspect_command."""
    before = only_reply(cluster.to_worker("call", "current_prefetch_count"))["prefetch_count"]
    result = cluster.to_worker("call", "increase_prefetch_count", "n=3")
    (record,) = replies(result)
    assert record["command"] == "increase_prefetch_count" and record["worker"] == cluster.worker.hostname
    assert record["reply"] == {"ok": "prefetch count incremented by 3"}
    poll_worker(cluster, ["call", "current_prefetch_count"],
                lambda records: records and records[0]["reply"]["prefetch_count"] == before + 3,
                "the prefetch count raised by 3")


def test_call_types_its_arguments(cluster):
    """Numbers, booleans, null, lists and objects as JSON; anything else (and a quoted number) as a string."""
    reply = only_reply(cluster.to_worker(
        "call", "argument_types", "n=2", "ratio=0.5", "on=true", "off=false", "none=null", "ids=[1, \"a\"]",
        "name=video", "quoted=\"7\"", "nan=NaN", "empty=", "--json", '{"opts": {"k": 1}}'))
    assert reply == {"n": ["number", 2], "ratio": ["number", 0.5], "on": ["boolean", True],
                     "off": ["boolean", False], "none": ["null", None], "ids": ["array", [1, "a"]],
                     "name": ["string", "video"], "quoted": ["string", "7"], "nan": ["string", "NaN"],
                     "empty": ["string", ""], "opts": ["object", {"k": 1}]}


def test_call_a_builtin_agrees_with_cctl_and_unknown_names_reply_an_error(cluster):
    assert only_reply(cluster.to_worker("call", "ping")) == only_reply(cluster.to_worker("ping"))
    error = only_reply(cluster.to_worker("call", "no_such_command"))
    assert list(error) == ["error"] and "no_such_command" in error["error"]


def test_call_usage_errors():
    for argv, message in (
            (["call"], "call needs NAME"),
            (["call", "x", "novalue"], "not KEY=VALUE"),
            (["call", "x", "a-b=1"], "'a-b' is not an argument name"),
            (["call", "x", "n=1", "--json", '{"n": 2}'], "n is given twice"),
            (["call", "x", "--json", "[1]"], "not a JSON object"),
            (["call", "x", "--json", "{"], "not JSON"),
            (["ping", "--json", "{}"], "--json does not apply to ping"),
            (["call", "shutdown"], "shutdown would go to every worker")):
        result = run_command(main, ["-b", "redis://127.0.0.1:1/0", *argv])
        assert result.status == 2 and result.stdout == b"", (argv, result)
        assert result.stderr.startswith("cctl: error: ") and message in result.stderr, (argv, result)


def test_usage_errors_come_before_anything_is_sent():
    # an unreachable broker would answer 69: 2 proves nothing was attempted
    for argv in (["shutdown"], ["pool_restart"], ["pool_shrink", "1"], ["rate_limit", "tests.app.add", "fast"],
                 ["revoke"], ["terminate", "SIGNOPE", "x"], ["ping", "--terminate"], ["ping", "--each"],
                 ["nosuchcommand"], ["time_limit", "tests.app.add"], ["autoscale", "4"], ["ping", "extra"],
                 ["revoke", "-", "-"], ["ping", "-"], ["revoke", "x", "--signal", "KILL"],
                 ["revoke_by_stamped_headers", "novalue"], ["inspect", "active"], ["control", "shutdown"]):
        result = run_command(main, ["-b", "redis://127.0.0.1:1/0", *argv])
        assert result.status == 2, (argv, result)
        assert result.stdout == b"" and result.stderr.startswith("cctl: error: ")


def test_celery_habit_of_inspect_and_control_gets_one_line():
    result = run_command(main, ["inspect", "active"])
    assert (result.status, result.stdout) == (2, b"")
    assert result.stderr == 'cctl: error: drop "inspect": cctl takes the command itself, e.g. cctl ping, cctl active\n'


def test_unreachable_broker_is_69_without_the_password():
    result = run_command(main, ["-b", "redis://:hunter2@127.0.0.1:1/0", "ping"])
    assert result.status == 69 and "hunter2" not in result.stderr


# ---------------------------------------------------------------- Redis: no orphaned reply keys

def test_no_orphaned_reply_keys_after_a_timeout(fresh_redis_url, start_worker, unique):
    """A solo worker busy in a task answers after cctl gave up: its reply must not leave a key behind."""
    url = fresh_redis_url
    worker = start_worker(url, queues=[unique], pool="solo", concurrency=1)
    client = redis.Redis.from_url(url)
    Cluster("redis", url, worker, unique).send("tests.app.sleep", (4,))
    wait_for(lambda: client.llen(unique) == 0, 20, "the worker taking the task")  # solo: it runs at once
    timed_out = run_command(main, ["-b", url, "stats", "-t", "0.5"])
    assert timed_out.status == 1 and timed_out.stdout == b""
    # the pidbox serves requests in order: once ping is answered, the late stats reply was sent (or dropped)
    assert run_command(main, ["-b", url, "ping", "-d", worker.hostname, "-t", "30"]).status == 0
    assert list(client.scan_iter(match="*reply.celery.pidbox*")) == []


def test_shutdown_with_destination(fresh_redis_url, start_worker):
    url = fresh_redis_url
    worker = start_worker(url, concurrency=1)
    result = run_command(main, ["-b", url, "shutdown", "-d", worker.hostname, "-t", "10"])
    assert result.status == 0 and result.stdout == b""  # workers exit without a reply
    worker.process.wait(30)


def test_global_keyprefix_from_the_app(fresh_redis_url, start_worker):
    """An -A app's global_keyprefix prefixes the fanout topic, the binding and the reply keys."""
    url = fresh_redis_url
    options = {"global_keyprefix": "pfx:"}
    worker = start_worker(url, concurrency=1, transport_options=options)
    result = run_bin("cctl", "-A", "tests.app", "ping", "-d", worker.hostname, "-t", "10",
                     env=worker_env(url, options))
    assert result.status == 0 and result.records[0]["reply"] == {"ok": "pong"}
    assert list(redis.Redis.from_url(url).scan_iter(match="*reply.celery.pidbox*")) == []
