"""contrib/: the Munin plug-ins under munin-run, the Prometheus rules under promtool, the Grafana dashboard
against what celops exports, the systemd units under systemd-analyze. Each against the real tool.

The tools come from Debian (scripts/ensure-brokers.sh installs them); a test skips only when its tool
is not installed, naming the package.
"""

import json
import os
import re
import shutil
import subprocess
import time

import pytest

from tests.conftest import BIN, run_bin
from tests.queue_support import publish
from tests.support import ROOT
from tests.test_cev_cam import T0, heartbeat, lifecycle, ndjson

CONTRIB = os.path.join(ROOT, "contrib")


def tool(name, package):
    """The path of a Debian tool, or a skip saying which package has it."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (Debian package {package}; scripts/ensure-brokers.sh installs it)")
    return path


# -- Munin ------------------------------------------------------------------------------------------------

def munin(tmp_path, plugin, *mode, **env):
    """``munin-run PLUGIN [MODE]`` with the plug-in linked into a private service dir and env.* in a private
    plugin-conf.d (as root: the test's files are private to root). Returns (status, stdout, stderr)."""
    munin_run = tool("munin-run", "munin-node")
    services, conf = tmp_path / "munin-plugins", tmp_path / "munin-conf"
    services.mkdir(exist_ok=True)
    conf.mkdir(exist_ok=True)
    link = services / plugin
    if not link.exists():
        link.symlink_to(os.path.join(CONTRIB, "munin", "celops_"))
    settings = {"CELOPS_BIN": BIN, **env}
    (conf / "celops").write_text("[celops_*]\nuser root\n" + "".join(f"env.{k} {v}\n" for k, v in settings.items()))
    run = subprocess.run([munin_run, "--servicedir", str(services), "--sconfdir", str(conf), plugin, *mode],
                         capture_output=True, text=True, timeout=120)
    return run.returncode, run.stdout, run.stderr


def munin_fields(tmp_path, plugin, *mode, **env):
    """``munin`` with its ``key value`` lines as a dict."""
    status, stdout, stderr = munin(tmp_path, plugin, *mode, **env)
    return status, dict(line.split(" ", 1) for line in stdout.splitlines() if line.strip()), stderr


def recent_history(tmp_path):
    """A real cev-cam SQLite history of recent events: names that clash once cleaned, old and running tasks."""
    now = time.time()
    events = [heartbeat("w1@h", now - 5)]
    events += lifecycle("a1", name="proj.add", start=now - 60) + lifecycle("a2", name="proj.add", start=now - 50)
    events += lifecycle("b1", name="proj_add", start=now - 40, outcome="failed")
    events += lifecycle("c1", name="2fa.check", start=now - 30)
    events += lifecycle("old", name="proj.add", start=now - 1000)  # finished before the window
    events += lifecycle("slow", name="proj.slow", start=now - 1000)[:2]  # started long ago, still running
    events += lifecycle("run", name="proj.slow", start=now - 10)[:2]
    events.append({"type": "task-sent", "uuid": "sent", "name": "proj.add", "hostname": "client@h",
                   "timestamp": now - 2, "clock": 0, "local_received": now - 2})
    events.sort(key=lambda event: event["local_received"])
    database = tmp_path / "history.db"
    saved = tmp_path / "events.ndjson"
    saved.write_bytes(ndjson(events))
    result = run_bin("cev-cam", "--once", "--sink", "sqlite", "--database", str(database), str(saved))
    assert result.status == 0, result
    return database


def test_munin_tasks_per_name_with_clean_fieldnames(tmp_path):
    database = recent_history(tmp_path)
    status, config, stderr = munin_fields(tmp_path, "celops_tasks", "config", CELOPS_DATABASE=database)
    assert status == 0, stderr
    clash = [field for field in config if field.startswith("proj_add_") and field.endswith(".label")]
    assert len(clash) == 1  # proj.add and proj_add both clean to proj_add: the changed one gets a hash
    proj_dot_add = clash[0].removesuffix(".label")
    assert {key: value for key, value in config.items() if key.endswith(".label")} == {
        "proj_add.label": "proj_add", f"{proj_dot_add}.label": "proj.add",
        "_2fa_check.label": "2fa.check", "proj_slow.label": "proj.slow"}
    assert config["graph_category"] == "celery" and config["proj_add.type"] == "GAUGE"
    assert all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key.split(".")[0]) for key in config)

    status, values, stderr = munin_fields(tmp_path, "celops_tasks", CELOPS_DATABASE=database)
    assert status == 0, stderr
    assert values == {f"{proj_dot_add}.value": "2", "proj_add.value": "1", "_2fa_check.value": "1",
                      "proj_slow.value": "0"}

    status, dirty, _ = munin_fields(tmp_path, "celops_tasks", "config", CELOPS_DATABASE=database,
                             MUNIN_CAP_DIRTYCONFIG=1)
    assert status == 0 and dirty == {**config, **values}


def test_munin_tasks_by_state_counts_in_flight_and_recent(tmp_path):
    database = recent_history(tmp_path)
    status, config, stderr = munin_fields(tmp_path, "celops_tasks_states", "config", CELOPS_DATABASE=database)
    assert status == 0, stderr
    assert config["SUCCESS.label"] == "SUCCESS" and config["graph_title"] == "Celery tasks by state"
    status, values, stderr = munin_fields(tmp_path, "celops_tasks_states", CELOPS_DATABASE=database)
    assert status == 0, stderr
    assert values == {"PENDING.value": "1", "RECEIVED.value": "0", "STARTED.value": "2", "RETRY.value": "0",
                      "SUCCESS.value": "3", "FAILURE.value": "1", "REVOKED.value": "0", "REJECTED.value": "0"}


def test_munin_stale_or_missing_history_is_unknown_not_zero(tmp_path):
    stale = tmp_path / "stale.db"
    saved = tmp_path / "old.ndjson"
    saved.write_bytes(ndjson(lifecycle("a1", start=T0)))  # 2023: cev-cam has not run since
    assert run_bin("cev-cam", "--once", "--sink", "sqlite", "--database", str(stale), str(saved)).status == 0
    for plugin in ("celops_tasks", "celops_tasks_states"):
        status, values, stderr = munin_fields(tmp_path, plugin, CELOPS_DATABASE=stale)
        assert status == 0 and values and set(values.values()) == {"U"}, (values, stderr)

    missing = tmp_path / "missing.db"
    status, values, stderr = munin_fields(tmp_path, "celops_tasks", CELOPS_DATABASE=missing)
    assert status != 0 and values == {} and f"no database at {missing}" in stderr
    status, answer, _ = munin(tmp_path, "celops_tasks", "autoconf", CELOPS_DATABASE=missing,
                              CELOPS_BROKER_URL="redis://127.0.0.1:1/0")
    assert status == 0 and answer.startswith(f"no (no database at {missing}")
    status, answer, _ = munin(tmp_path, "celops_tasks", "autoconf", CELOPS_DATABASE=stale)
    assert (status, answer) == (0, "yes\n")


def test_munin_live_sample_without_a_history(fresh_redis_url, start_worker, tmp_path, unique):
    """No env.CELOPS_DATABASE: the task graphs take a short live sample of a real worker's events."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.support import send_tasks

    start_worker(fresh_redis_url, queues=[unique], pool="solo", concurrency=1)
    sample = {"CELOPS_BROKER_URL": fresh_redis_url, "CELOPS_SAMPLE": 3}

    def while_tasks_run(plugin, *mode):
        """munin-run during a stream of tasks (sent until it returns: the sample starts when cev-cam subscribed)."""
        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(munin_fields, tmp_path, plugin, *mode, **sample)
            while not running.done():
                send_tasks(fresh_redis_url, unique, "tests.app.add", (1, 2))
                send_tasks(fresh_redis_url, unique, "tests.app.fail", ("no",))
            return running.result()

    status, dirty, stderr = while_tasks_run("celops_tasks", "config")
    assert status == 0, stderr
    assert dirty["tests_app_add.label"] == "tests.app.add" and "live sample" in dirty["graph_info"]
    status, values, stderr = while_tasks_run("celops_tasks")
    assert status == 0, stderr
    assert int(values["tests_app_add.value"]) > 0 and int(values["tests_app_fail.value"]) > 0
    status, values, stderr = while_tasks_run("celops_tasks_states")
    assert status == 0, stderr
    assert int(values["SUCCESS.value"]) > 0 and int(values["FAILURE.value"]) > 0 and "PENDING.value" in values

    status, values, stderr = munin_fields(tmp_path, "celops_tasks", CELOPS_BROKER_URL="redis://:secret@127.0.0.1:1/0",
                                          CELOPS_SAMPLE=1)
    assert status != 0 and values == {} and "cannot reach broker" in stderr and "secret" not in stderr
    status, answer, _ = munin(tmp_path, "celops_tasks", "autoconf", **sample)
    assert (status, answer) == (0, "yes\n")


def test_munin_queue_lengths_from_cq_len(fresh_redis_url, tmp_path):
    publish(fresh_redis_url, [("celery", 0, (1, 1))] * 3 + [("video.hd", p, (p, 1)) for p in (0, 5, 9)])
    status, config, stderr = munin_fields(tmp_path, "celops_queues", "config", CELOPS_BROKER_URL=fresh_redis_url)
    assert status == 0, stderr
    assert config["celery.label"] == "celery" and config["video_hd.label"] == "video.hd"
    status, values, stderr = munin_fields(tmp_path, "celops_queues", CELOPS_BROKER_URL=fresh_redis_url)
    assert status == 0, stderr
    assert values == {"celery.value": "3", "video_hd.value": "3"}  # every priority list counted
    status, values, _ = munin_fields(tmp_path, "celops_queues", CELOPS_BROKER_URL=fresh_redis_url,
                              CELOPS_QUEUES="video.hd")
    assert values == {"video_hd.value": "3"}

    status, values, stderr = munin_fields(tmp_path, "celops_queues", CELOPS_BROKER_URL="redis://:secret@127.0.0.1:1/0")
    assert status != 0 and values == {} and "cq-len" in stderr and "secret" not in stderr
    status, suggested, _ = munin(tmp_path, "celops_queues", "suggest", CELOPS_BROKER_URL=fresh_redis_url,
                                 CELOPS_SAMPLE=1)
    assert (status, suggested) == (0, "tasks\ntasks_states\nqueues\n")  # the task graphs by live sample


# -- Prometheus alert rules -----------------------------------------------------------------------------------

RULES = os.path.join(CONTRIB, "prometheus", "celops-alerts.yml")
RULE_TESTS = os.path.join(ROOT, "tests", "promtool", "celops-alerts.test.yml")


def promtool(*args):
    return subprocess.run([tool("promtool", "prometheus"), *args], capture_output=True, text=True, timeout=120)


def alert_rules(path=RULES):
    import yaml

    with open(path) as rules:
        return [rule for group in yaml.safe_load(rules)["groups"] for rule in group["rules"]]


def test_alert_rules_pass_promtool_check_and_unit_tests():
    check = promtool("check", "rules", RULES)
    assert check.returncode == 0, check.stdout + check.stderr
    unit = promtool("test", "rules", RULE_TESTS)
    assert unit.returncode == 0, unit.stdout + unit.stderr


def test_every_alert_has_a_firing_and_a_quiet_case_that_a_broken_rule_fails(tmp_path):
    import yaml

    with open(RULE_TESTS) as cases:
        tests = yaml.safe_load(cases)
    checks = [check for case in tests["tests"] for check in case["alert_rule_test"]]
    names = [rule["alert"] for rule in alert_rules()]
    assert set(names) == {"CeleryWorkerDown", "CeleryQueueBacklogGrowing", "CeleryTaskFailureRate",
                          "CelopsNoEvents", "CelopsEventGaps"}
    for name in names:
        assert any(c["alertname"] == name and c["exp_alerts"] for c in checks), f"{name} never fires in a test"
        assert any(c["alertname"] == name and not c["exp_alerts"] for c in checks), f"{name} is never quiet"

    # The unit tests can fail: each alert made to never fire, then to always fire, is caught.
    with open(RULES) as rules:
        original = yaml.safe_load(rules)
    for name in names:
        for broken_expr in ("vector(1) == 0", "vector(1)"):
            broken = json.loads(json.dumps(original))
            for rule in broken["groups"][0]["rules"]:
                if rule["alert"] == name:
                    rule["expr"] = broken_expr
            (tmp_path / "rules.yml").write_text(yaml.safe_dump(broken))
            (tmp_path / "tests.yml").write_text(yaml.safe_dump({**tests, "rule_files": ["rules.yml"]}))
            run = promtool("test", "rules", str(tmp_path / "tests.yml"))
            assert run.returncode != 0 and name in run.stdout + run.stderr, (name, broken_expr)


# -- what celops exports, and the names the dashboard and the rules query ------------------------------------

PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
                "group_right", "inf", "nan"}


def promql_metric_names(expr):
    """The metric names a PromQL expression reads (Grafana's $variables allowed)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings: label values, regexes
    expr = re.sub(r"\$\{?\w+\}?", "1", expr)  # Grafana variables: $__rate_interval, ${datasource}
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", expr)  # label matchers, ranges
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"\boffset\s+\w+", " ", expr)
    expr = re.sub(r"(?<![\w:])\d[\w.]*", " ", expr)  # numbers, durations
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        if expr[match.end():].lstrip().startswith("(") or match.group() in PROMQL_WORDS:
            continue  # a function or an aggregation
        names.add(match.group())
    return names


def test_promql_metric_names_sees_through_functions_matchers_and_variables():
    expr = ('sum by (name, le) (rate(celery_task_runtime_bucket{name=~"$task", le!="+Inf"}[$__rate_interval]))'
            ' / on (name) group_left (x) (up offset 5m > bool 0.5 or vector(0)) unless absent(celops_events_total)')
    assert promql_metric_names(expr) == {"celery_task_runtime_bucket", "up", "celops_events_total"}


@pytest.fixture(scope="module")
def exported_metric_names(tmp_path_factory, redis_server, rabbit_vhost):
    """Every series name celops writes, from the real commands: cq-len on Redis and RabbitMQ, cev-cam on
    events of every kind it counts."""
    from prometheus_client.parser import text_string_to_metric_families

    workdir = tmp_path_factory.mktemp("exported")
    texts = []
    redis_url = redis_server.url(63)
    publish(redis_url, [("celery", 0, (1, 1)), ("celery", 9, (1, 1))])
    publish(rabbit_vhost.url(), [("celery", 0, (1, 1))])
    for url in (redis_url, rabbit_vhost.url()):
        result = run_bin("cq-len", "-b", url, "--format", "prom", "celery")
        assert result.status == 0, result
        texts.append(result.stdout.decode())
    events = [heartbeat("w1@h", T0, active=1)] + lifecycle("a1") + lifecycle("b2", outcome="failed", start=T0 + 1)
    events += [dict(event, type=f"task-{subject}", uuid=f"c-{subject}", clock=10)
               for subject in ("sent", "retried", "revoked", "rejected") for event in lifecycle("x")[:1]]
    events.append({"type": "celops-gap", "reason": "restart", "since": T0, "until": T0 + 1, "dropped": None})
    saved, textfile = workdir / "events.ndjson", workdir / "celops.prom"
    saved.write_bytes(ndjson(events))
    result = run_bin("cev-cam", "--once", "--sink", "prom", "--textfile", str(textfile), str(saved))
    assert result.status == 0, result
    texts.append(textfile.read_text())
    return {sample.name for text in texts for family in text_string_to_metric_families(text)
            for sample in family.samples}


def test_alert_rules_query_only_exported_metrics(exported_metric_names):
    for rule in alert_rules():
        unknown = promql_metric_names(rule["expr"]) - exported_metric_names
        assert not unknown, f"{rule['alert']} queries {unknown}, which celops does not export"


# -- Grafana dashboard ----------------------------------------------------------------------------------------

def dashboard_queries():
    """(panel or variable title, PromQL) of every query in contrib/grafana/celops.json, after checking its shape."""
    with open(os.path.join(CONTRIB, "grafana", "celops.json")) as source:
        dashboard = json.load(source)
    assert dashboard["uid"] == "celops" and dashboard["schemaVersion"] >= 36
    panels = dashboard["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    queries = []
    for panel in panels:
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]) and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}" and panel["targets"], panel["title"]
        queries += [(panel["title"], target["expr"]) for target in panel["targets"]]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            (metric,) = re.fullmatch(r"label_values\((\w+), *\w+\)", variable["query"]["query"]).groups()
            queries.append((variable["name"], metric))
    return queries


def test_dashboard_queries_only_exported_metrics(exported_metric_names):
    queries = dashboard_queries()
    assert len(queries) > 20
    used = set()
    for title, expr in queries:
        names = promql_metric_names(expr)
        assert names, f"{title}: no metric in {expr!r}"
        assert names <= exported_metric_names, f"{title!r} queries {names - exported_metric_names}, not exported"
        used |= names
    # the dashboard shows every family celops exports (created timestamps aside)
    assert {name for name in exported_metric_names if not name.endswith("_created")} - used <= {
        "celery_task_runtime_count", "celery_task_runtime_sum", "celery_task_sent_total",
        "celery_task_rejected_total"}


# -- systemd units --------------------------------------------------------------------------------------------

SYSTEMD = os.path.join(CONTRIB, "systemd")
SERVICES = ("celops-cam.service", "celops-history.service", "celops-queues.service")


@pytest.fixture
def system_root(tmp_path):
    """A filesystem root holding the units as installed, systemd's own units (the targets they name) and the
    commands at their ExecStart paths (the checkout's launcher: verify checks the path, it runs nothing)."""
    analyze = tool("systemd-analyze", "systemd")
    root = tmp_path / "root"
    own_units = next(path for path in ("/usr/lib/systemd/system", "/lib/systemd/system") if os.path.isdir(path))
    shutil.copytree(own_units, root / "usr/lib/systemd/system", symlinks=True)
    shutil.copytree(SYSTEMD, root / "etc/systemd/system", ignore=shutil.ignore_patterns("*.sysusers", "*.tmpfiles"))
    (root / "usr/local/bin").mkdir(parents=True)
    for name in ("cev-cam", "cq-len"):
        shutil.copy(os.path.join(BIN, "_celops"), root / "usr/local/bin" / name)
    return analyze, root


def test_systemd_units_verify_and_are_hardened_by_the_prefix_drop_in(system_root):
    analyze, root = system_root
    units = [str(root / "etc/systemd/system" / unit) for unit in (*SERVICES, "celops-queues.timer")]
    verify = subprocess.run([analyze, "verify", "--man=no", f"--root={root}", *units],
                            capture_output=True, text=True, timeout=120)
    assert (verify.returncode, verify.stdout + verify.stderr) == (0, "")  # unknown keys are only warnings
    for service in SERVICES:  # exposure 0..100 (shown as 0..10): about 96 without the drop-in
        security = subprocess.run([analyze, "security", "--offline=yes", f"--root={root}", "--threshold=20",
                                   service], capture_output=True, text=True, timeout=120)
        assert security.returncode == 0, security.stdout[-300:] + security.stderr

    (root / "usr/local/bin/cq-len").unlink()  # verify does look at ExecStart
    missing = subprocess.run([analyze, "verify", "--man=no", f"--root={root}", units[2]],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode != 0 and "/usr/local/bin/cq-len is not executable" in missing.stderr


def test_systemd_user_and_textfile_directory(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    sysusers = subprocess.run([tool("systemd-sysusers", "systemd"), f"--root={root}",
                               os.path.join(SYSTEMD, "celops.sysusers")], capture_output=True, text=True)
    assert sysusers.returncode == 0, sysusers.stderr
    (gid,) = [line.split(":")[3] for line in (root / "etc/passwd").read_text().splitlines()
              if line.startswith("celops:")]
    tmpfiles = subprocess.run([tool("systemd-tmpfiles", "systemd"), f"--root={root}", "--create",
                               os.path.join(SYSTEMD, "celops.tmpfiles")], capture_output=True, text=True)
    assert (tmpfiles.returncode, tmpfiles.stderr) == (0, "")
    textfiles = os.stat(root / "var/lib/prometheus/node-exporter")
    assert (textfiles.st_gid, textfiles.st_mode & 0o777) == (int(gid), 0o775)
