"""Scrape endpoints: cq-len --listen and cev-cam --sink prom --listen, scraped with requests like Prometheus."""

import os
import signal
import subprocess

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from celops.commands import cev_cam, cq_len
from celops.core.scrape import listen_address
from tests.conftest import BIN, run_command
from tests.queue_support import publish
from tests.support import RedisServer, free_port, poll, send_tasks, wait_for
from tests.test_cev_cam import T0, heartbeat, lifecycle, ndjson


def samples(text):
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


class Served:
    """A celops command serving /metrics on a free port, in a subprocess; SIGTERM ends it with 0."""

    def __init__(self, command, *argv, stdin=subprocess.DEVNULL):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/metrics"
        self.process = subprocess.Popen([os.path.join(BIN, command), *argv, "--listen", f"127.0.0.1:{self.port}"],
                                        stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def scrape(self):
        """(status, samples or body) of one scrape; None while it is not listening yet."""
        assert self.process.poll() is None, self.process.stderr.read().decode()
        try:
            response = requests.get(self.url, timeout=10)
        except requests.ConnectionError:
            return None
        return response.status_code, (samples(response.text) if response.ok else response.text)

    def until(self, accept, what, timeout=30):
        return poll(self.scrape, lambda scraped: scraped is not None and accept(scraped), timeout, what)

    def stop(self):
        """SIGTERM: (exit status, stdout, stderr)."""
        self.process.send_signal(signal.SIGTERM)
        stdout, stderr = self.process.communicate(timeout=20)
        return self.process.returncode, stdout, stderr.decode()

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def served():
    started = []

    def serve(*argv, **options):
        started.append(Served(*argv, **options))
        return started[-1]

    yield serve
    for process in started:
        process.kill()


def length(queue):
    return ("celery_queue_length", (("queue", queue),))


def test_cq_len_measures_every_priority_list_on_each_scrape(fresh_redis_url, unique, served):
    """7 messages over four priority lists are 7 (celery-exporter's issue 272 measured 3), and a scrape is live."""
    publish(fresh_redis_url, [(unique, priority, (priority, 1)) for priority in (0, 3, 5, 9, 9, 1, 7)])
    endpoint = served("cq-len", "-b", fresh_redis_url, unique, f"{unique}-missing")
    status, got = endpoint.until(lambda scraped: True, "cq-len listening")
    assert status == 200 and got[length(unique)] == 7
    assert not [key for key in got if ("queue", f"{unique}-missing") in key[1]]  # unknown: no series, not a 0
    assert {step: got[("celery_queue_priority_length", (("priority", step), ("queue", unique)))]
            for step in ("0", "3", "6", "9")} == {"0": 2, "3": 2, "6": 1, "9": 2}
    assert got[("celery_queue_unacked", (("queue", unique),))] == 0
    publish(fresh_redis_url, [(unique, 0, (1, 1))] * 2)
    assert endpoint.scrape()[1][length(unique)] == 9  # measured by this scrape, not by a timer
    status, stdout, stderr = endpoint.stop()
    assert (status, stdout) == (0, b"")
    (warning,) = stderr.splitlines()  # said once, not at each of the scrapes
    assert warning.startswith(f"cq-len: unknown queue '{unique}-missing'")


def test_cq_len_counts_rabbitmq_unacked(rabbit_vhost, unique, served):
    """Messages a consumer holds unacknowledged are in the queue's length: ready + unacked."""
    import kombu

    url = rabbit_vhost.url()
    publish(url, [(unique, 0, (n, n)) for n in range(5)])
    endpoint = served("cq-len", "-b", url, unique)
    with kombu.Connection(url) as connection:
        held = []
        channel = connection.channel()
        channel.basic_qos(0, 2, False)
        with kombu.Consumer(channel, kombu.Queue(unique, no_declare=True), callbacks=[
                lambda body, message: held.append(message)], accept=["json"]):
            wait_for(lambda: connection.drain_events(timeout=1) or len(held) >= 2, 20, "two messages delivered")
            _, got = endpoint.until(lambda scraped: scraped[0] == 200 and scraped[1].get(
                ("celery_queue_unacked", (("queue", unique),))) == 2, "the management API's unacked count")
            assert got[length(unique)] == 5 and got[("celery_queue_consumers", (("queue", unique),))] == 1
    assert endpoint.stop()[0] == 0


@pytest.fixture
def own_redis(tmp_path):
    server = RedisServer(str(tmp_path / "redis")).start()
    yield server
    server.stop()


def test_cq_len_scrapes_answer_503_while_the_broker_is_away(own_redis, unique, served):
    server = own_redis
    publish(server.url(0), [(unique, 0, (1, 1))])
    endpoint = served("cq-len", "-b", server.url(0), unique)
    assert endpoint.until(lambda scraped: True, "cq-len listening")[1][length(unique)] == 1
    server.process.kill()
    server.process.wait()
    for _ in range(3):
        status, body = endpoint.scrape()
        assert status == 503 and body.startswith(f"cannot reach broker {server.url(0)}: ")
    server.start()
    publish(server.url(0), [(unique, 0, (1, 1))])
    assert endpoint.until(lambda scraped: scraped[0] == 200, "scrapes answering again")[1][length(unique)] == 1
    status, stdout, stderr = endpoint.stop()
    assert (status, stdout) == (0, b"")
    failed, recovered = stderr.splitlines()  # one line for the outage, however many scrapes failed
    assert failed.startswith(f"cq-len: scrape failed: cannot reach broker {server.url(0)}: ")
    assert recovered == "cq-len: scrapes answer again"


def test_cev_cam_keeps_one_series_per_worker_of_a_host(fresh_redis_url, start_worker, served, unique):
    """Two real workers on one host: two worker series (celery-exporter collapses them into one)."""
    workers = [start_worker(fresh_redis_url, name=name, queues=[unique], pool="solo", concurrency=1)
               for name in ("w1", "w2")]
    assert len({worker.hostname.partition("@")[2] for worker in workers}) == 1
    endpoint = served("cev-cam", "--live", "-b", fresh_redis_url, "--sink", "prom", "--frequency", "0.2")
    up = {worker.hostname: ("celery_worker_up", (("hostname", worker.hostname),)) for worker in workers}
    endpoint.until(lambda scraped: all(scraped[1].get(key) == 1 for key in up.values()), "both workers' heartbeats")
    send_tasks(fresh_redis_url, unique, "tests.app.add", (1, 2), count=4)
    _, got = endpoint.until(lambda scraped: sum(value for (name, _), value in scraped[1].items()
                                                if name == "celery_task_succeeded_total") == 4, "the four tasks counted")
    assert sorted(dict(labels)["hostname"] for name, labels in got if name == "celery_worker_up") == sorted(up)
    assert endpoint.stop()[0] == 0


def test_cev_cam_serves_the_last_shot_and_the_textfile_alike(tmp_path, served):
    """--listen and --textfile together: the same families, from the same shot."""
    events = [heartbeat("w1@h", T0), heartbeat("w2@h", T0)] + lifecycle("a1", hostname="w2@h")
    textfile = tmp_path / "celops.prom"
    endpoint = served("cev-cam", "--sink", "prom", "--textfile", str(textfile), "--frequency", "0.1",
                      stdin=subprocess.PIPE)
    endpoint.process.stdin.write(ndjson(events))
    endpoint.process.stdin.flush()
    _, got = endpoint.until(lambda scraped: scraped[1].get(("celops_events_total", ())) == 5, "the events served")
    assert got == samples(textfile.read_text())
    assert got[("celery_task_succeeded_total", (("hostname", "w2@h"), ("name", "proj.add")))] == 1
    endpoint.process.stdin.close()  # the input's end: a last shot, exit 0
    assert endpoint.process.wait(20) == 0


def test_listen_usage_and_a_busy_port(tmp_path):
    for main, argv, message in (
            (cq_len.main, ["--listen", "9809", "--watch", "1"], "--listen measures on each scrape"),
            (cq_len.main, ["--listen", "localhost:http"], "not HOST:PORT: 'localhost:http'"),
            (cev_cam.main, ["--sink", "prom"], "--sink prom needs --textfile PATH or --listen ADDR"),
            (cev_cam.main, ["--listen", "9809"], "--listen is for --sink prom")):
        result = run_command(main, ["-b", "redis://127.0.0.1:1/0", *argv])
        assert result.status == 2 and message in result.stderr, (argv, result)
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_command(cev_cam.main, ["--once", "--sink", "prom", "--listen", f"127.0.0.1:{port}"], b"")
    assert result.status == 73 and result.stderr == \
        f"cev-cam: error: cannot listen on 127.0.0.1:{port}: Address already in use\n"


def test_listen_address_forms():
    assert listen_address("9808") == ("127.0.0.1", 9808)
    assert listen_address("0.0.0.0:9808") == ("0.0.0.0", 9808)
    assert listen_address("[::1]:9808") == ("::1", 9808)
