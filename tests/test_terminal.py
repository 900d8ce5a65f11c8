"""What a person at a terminal meets first: usage lines, `make demo`."""

import os
import subprocess

from tests.conftest import run_bin
from tests.support import ROOT


def test_cctl_without_arguments_asks_for_the_command_only():
    result = run_bin("cctl")
    assert result.status == 2
    assert result.stderr.splitlines()[0] == "cctl: error: the following arguments are required: COMMAND"


def test_demo_output_is_plain_text_off_a_terminal(tmp_path):
    """Piped or logged, `make demo` has no ANSI codes, and its commands print NDJSON, not tables."""
    env = {name: value for name, value in os.environ.items() if name != "NO_COLOR"}
    result = subprocess.run([os.path.join(ROOT, "scripts", "demo.sh")], capture_output=True, env=dict(env, TERM="xterm"),
                            timeout=240)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert b"\x1b" not in result.stdout
    assert b'\n$ cq-ls\n{"type":"queue","queue":"celery"' in result.stdout
