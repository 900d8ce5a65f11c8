"""cq-purge: consent, exact counts, only queue keys removed; unacked messages on Redis (celery issue 455)."""

import io

import redis

from celops.commands import cq_len, cq_purge
from celops.core.cli import IO
from tests.conftest import run_bin, run_command
from tests.queue_support import publish
from tests.support import poll, send_tasks, worker_env

ODD_NAME = "purge me ✓ ü"


class Terminal(io.BytesIO):
    """Standard input that is a TTY, with the user's answer already typed."""

    def isatty(self):
        return True


def run_on_terminal(argv, answer):
    out, err = io.BytesIO(), io.StringIO()
    status = cq_purge.main(argv, io=IO(stdin=Terminal(answer), stdout=out, stderr=err))
    return status, out.getvalue(), err.getvalue()


def lengths(url, *queues):
    return {r["queue"]: r["messages"] for r in run_command(cq_len.main, ["-b", url, *queues]).records}


def test_redis_consent_dry_run_and_what_survives(fresh_redis_url, unique):
    url = fresh_redis_url
    publish(url, [(q, p, (p, 1)) for q in (unique, ODD_NAME, "keep") for p in (0, 4, 9)])
    client = redis.Redis.from_url(url)
    client.set("other:app:key", "precious")
    client.hset("unacked", "tag", "[{}, \"\", \"%s\"]" % unique)
    before = set(client.keys())

    refused = run_command(cq_purge.main, ["-b", url, "-Q", unique])  # no TTY, no -f
    assert refused.status == 2 and "-f/--force" in refused.stderr and refused.stdout == b""
    assert lengths(url, unique)[unique] == 3

    dry = run_command(cq_purge.main, ["-b", url, "-X", "keep", "--dry-run"])
    assert dry.status == 0, dry
    assert {r["queue"]: r["purged"] for r in dry.records} == {unique: 3, ODD_NAME: 3}
    assert all(r["dry_run"] for r in dry.records)

    status, out, err = run_on_terminal(["-b", url, "-Q", f"{unique},{ODD_NAME}"], b"n\n")
    assert status == 1 and out == b"" and "not confirmed" in err and f"{unique}: 3 messages" in err and "[y/N]" in err
    status, out, err = run_on_terminal(["-b", url, "-Q", f"{unique},{ODD_NAME}", "-Q", "keep", "-X", "keep"], b"y\n")
    assert status == 0, err
    assert out.splitlines() == [b'{"type":"queue","queue":"%s","purged":3}' % unique.encode(),
                                b'{"type":"queue","queue":"%s","purged":3}' % ODD_NAME.encode()]
    assert lengths(url, unique, ODD_NAME, "keep") == {unique: 0, ODD_NAME: 0, "keep": 3}
    gone = {key for key in before - set(client.keys())}
    assert all(key.startswith(unique.encode()) or key.startswith(ODD_NAME.encode()) for key in gone), gone
    assert client.get("other:app:key") == b"precious" and client.hlen("unacked") == 1
    assert any(key.startswith(b"_kombu.binding.") for key in client.keys())


def test_redis_a_key_that_is_not_a_list_is_reported_and_the_rest_purged(fresh_redis_url, unique):
    """One wrong-type key used to stop the whole purge (exit 1, nothing purged); it is never removed."""
    url = fresh_redis_url
    publish(url, [(q, 0, (1, 1)) for q in (unique, "keep")])
    client = redis.Redis.from_url(url)
    client.set("strq", "precious")
    client.sadd("_kombu.binding.strq", "strq\x06\x16\x06\x16strq")
    for argv in (["--dry-run"], ["-f"]):
        result = run_command(cq_purge.main, ["-b", url, "-Q", f"strq,{unique}", *argv])
        assert result.status == 65, result
        assert result.records[0] == {"type": "error", "queue": "strq", "key": "strq",
                                     "error": "holds a string, not a list"}
        assert result.records[1]["queue"] == unique and result.records[1]["purged"] == 1
        assert "cq-purge: error: queue 'strq': key 'strq' holds a string, not a list" in result.stderr
    assert client.get("strq") == b"precious" and lengths(url, unique, "keep") == {unique: 0, "keep": 1}


def test_redis_global_keyprefix_app_with_force(fresh_redis_url, unique):
    options = {"global_keyprefix": "pfx:"}
    publish(fresh_redis_url, [(unique, p, (p, 1)) for p in (0, 9)], transport_options=options)
    result = run_bin("cq-purge", "-A", "tests.app", "-Q", unique, "-f", env=worker_env(fresh_redis_url, options))
    assert result.records == [{"type": "queue", "queue": unique, "purged": 2}], result
    assert not [k for k in redis.Redis.from_url(fresh_redis_url).keys() if unique.encode() in k
                and not k.startswith(b"pfx:_kombu.binding")]


def test_redis_unacked_counted_and_purged(fresh_redis_url, unique, start_worker):
    """Prefetched messages survive a plain purge; --unacked drops their restore copies."""
    url = fresh_redis_url
    worker = start_worker(url, queues=[unique], concurrency=2, events=False)
    send_tasks(url, unique, "tests.app.sleep", (30,), 5)
    # two run (acked at start), two wait prefetched in the unacked hash, one stays in the list
    record = poll(lambda: run_command(cq_len.main, ["-b", url, unique]).records[0],
                  lambda r: r["unacked"] == 2 and r["ready"] == 1, 20, "two prefetched, one waiting")
    assert record["messages"] == 1

    plain = run_command(cq_purge.main, ["-b", url, "-Q", unique, "-f"])
    assert plain.records == [{"type": "queue", "queue": unique, "purged": 1}]
    assert run_command(cq_len.main, ["-b", url, unique]).records[0]["unacked"] == 2  # issue 455

    forced = run_command(cq_purge.main, ["-b", url, "-Q", unique, "-f", "--unacked"])
    assert forced.records == [{"type": "queue", "queue": unique, "purged": 0, "unacked_purged": 2}]
    client = redis.Redis.from_url(url)
    assert client.hlen("unacked") == 0 and client.zcard("unacked_index") == 0
    worker.kill()


def test_rabbitmq_purge(rabbit_vhost, unique):
    url = rabbit_vhost.url()
    publish(url, [(q, 0, (n, n)) for q in (unique, f"{ODD_NAME} {unique}") for n in range(4)])
    dry = run_command(cq_purge.main, ["-b", url, "-Q", unique, "--dry-run"])
    assert dry.records == [{"type": "queue", "queue": unique, "purged": 4, "dry_run": True}], dry
    assert run_command(cq_purge.main, ["-b", url, "-Q", unique]).status == 2
    purged = run_command(cq_purge.main, ["-b", url, "-Q", f"{unique},{ODD_NAME} {unique}", "-f"])
    assert [r["purged"] for r in purged.records] == [4, 4], purged
    cleared = run_command(cq_purge.main, ["-b", url, "-Q", unique, "--dry-run"])
    assert cleared.records[0]["purged"] == 0
    unacked = run_command(cq_purge.main, ["-b", url, "-Q", unique, "-f", "--unacked"])
    assert unacked.status == 2 and "RabbitMQ" in unacked.stderr


def test_an_empty_queue_name_is_a_usage_error_never_everything(fresh_redis_url, unique):
    """cq-purge -Q "$QUEUE" -f with QUEUE unset used to empty every queue of the broker."""
    url = fresh_redis_url
    publish(url, [(q, 0, (1, 1)) for q in (unique, "keep")])
    for queues in (["-Q", ""], ["-Q", ","], ["-Q", f"{unique},,keep"], ["-Q", " "], ["-Q", unique, "-X", ""]):
        result = run_bin("cq-purge", "-b", url, *queues, "-f")
        assert result.status == 2 and "queue name" in result.stderr and result.stdout == b"", (queues, result)
    assert lengths(url, unique, "keep") == {unique: 1, "keep": 1}


def test_every_option_that_names_things_refuses_an_empty_name(fresh_redis_url):
    for command, argv in [("cq-len", [""]), ("cq-peek", [""]), ("cctl", ["ping", "-d", ""]),
                          ("cctl", ["ping", "-d", "w1@h,"]), ("cev-dump", ["--type", ""]),
                          ("cev-dump", ["--task", ","]), ("cev-dump", ["--hostname", ""]),
                          ("cctl", ["revoke", "x", "--id-field", ""])]:
        result = run_bin(command, "-b", fresh_redis_url, *argv, "-t", "1")
        assert result.status == 2 and "empty" in result.stderr, (command, argv, result)
