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
    status, suggested, _ = munin(tmp_path, "celops_queues", "suggest", CELOPS_BROKER_URL=fresh_redis_url)
    assert (status, suggested) == (0, "queues\n")
