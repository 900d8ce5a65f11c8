"""Output paths that can't be written: exit 73 naming the user's path, in every command that writes a file."""

import os

import pytest

from celops.commands import cev_cam, cq_len
from celops.core.outfiles import write_textfile
from tests.conftest import run_command

HEARTBEAT = b'{"type": "worker-heartbeat", "hostname": "w1@h", "timestamp": 1700000000.0, "freq": 2.0}\n'


@pytest.mark.parametrize("argv, path", [
    (["--sink", "prom", "--textfile", "/nonexistent/x.prom"], "/nonexistent/x.prom"),
    (["--sink", "sqlite", "--database", "/nonexistent/dir/x.db"], "/nonexistent/dir/x.db"),
])
def test_cev_cam_unwritable_sink_path_is_exit_73(argv, path):
    result = run_command(cev_cam.main, ["--once", *argv], HEARTBEAT)
    assert result.status == 73, result
    assert result.stderr == f"cev-cam: error: cannot write {path}: no such directory {os.path.dirname(path)}\n"


def test_cq_len_unwritable_textfile_is_exit_73(fresh_redis_url, unique):
    result = run_command(cq_len.main, ["-b", fresh_redis_url, "--textfile", "/nonexistent/x.prom", unique])
    assert result.status == 73, result
    assert result.stderr.endswith("cq-len: error: cannot write /nonexistent/x.prom: no such directory /nonexistent\n")


def test_a_failed_textfile_write_leaves_no_temporary_file_behind(tmp_path):
    from prometheus_client import CollectorRegistry

    target = tmp_path / "is-a-directory.prom"
    target.mkdir()  # the rename over it fails
    with pytest.raises(Exception, match=f"cannot write {target}: is a directory"):
        write_textfile(str(target), CollectorRegistry())
    assert os.listdir(tmp_path) == ["is-a-directory.prom"]
