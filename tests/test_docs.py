"""Every command has help, a man page that renders, and completions; none has drifted."""

import configparser
import importlib
import os
import re
import shutil
import subprocess
import sys

import pytest

from celops.commands import COMMANDS, TOOLS
from tests.conftest import run_bin
from tests.support import ROOT


def console_scripts():
    config = configparser.ConfigParser()
    config.read(os.path.join(ROOT, "setup.cfg"))
    lines = config["options.entry_points"]["console_scripts"].strip().splitlines()
    return {line.split("=")[0].strip(): line.split("=")[1].strip() for line in lines}


def test_console_scripts_match_the_command_table():
    """The commands, plus the tools (celops-completion prints their scripts; it has no records or broker)."""
    assert console_scripts() == {**{name: f"celops.commands.{module}:main" for name, module in COMMANDS.items()},
                                 **{name: f"{module}:main" for name, module in TOOLS.items()}}


def test_every_command_installs_its_man_page_and_completions():
    """setup.cfg's data_files name each command's generated files: a new command forgotten there ships none."""
    config = configparser.ConfigParser()
    config.read(os.path.join(ROOT, "setup.cfg"))
    installed = {path.strip() for paths in config["options.data_files"].values() for path in paths.split(",")}
    for command in [*COMMANDS, *TOOLS]:
        for path in (f"man/{command}.1", f"completions/bash/{command}", f"completions/zsh/_{command}"):
            assert path in installed, f"{path} is not in setup.cfg's data_files"


def test_generated_files_have_not_drifted():
    result = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "gen_docs.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("command", sorted([*COMMANDS, *TOOLS]))
def test_help_man_page_and_completions(command):
    result = run_bin(command, "--help")
    assert result.status == 0 and result.stdout.startswith(b"usage: " + command.encode())
    version = run_bin(command, "--version")
    assert version.status == 0 and version.stdout.decode().startswith(command + " ")

    rendered = subprocess.run(["man", "-l", os.path.join(ROOT, "man", f"{command}.1")], capture_output=True,
                              text=True, env=dict(os.environ, MANPAGER="cat", PAGER="cat", MANWIDTH="80"))
    assert rendered.returncode == 0 and "EXIT STATUS" in rendered.stdout and command in rendered.stdout

    bash = os.path.join(ROOT, "completions", "bash", command)
    assert subprocess.run(["bash", "-n", bash]).returncode == 0
    assert "complete " in open(bash).read() and command in open(bash).read()
    zsh = os.path.join(ROOT, "completions", "zsh", f"_{command}")
    assert open(zsh).read().startswith(f"#compdef {command}")
    if shutil.which("zsh"):
        assert subprocess.run(["zsh", "-n", zsh]).returncode == 0


MAN_PAGES = sorted(os.listdir(os.path.join(ROOT, "man")))


@pytest.mark.parametrize("page", MAN_PAGES)
def test_man_page_fits_80_columns(page):
    """`MANWIDTH=80 man -l` gives no line past 80 columns, no troff warning, and no markdown backticks."""
    rendered = subprocess.run(["man", "-l", os.path.join(ROOT, "man", page)], capture_output=True, text=True,
                              env=dict(os.environ, MANPAGER="cat", PAGER="cat", MANWIDTH="80", LANG="C.UTF-8"))
    assert rendered.returncode == 0 and rendered.stderr == ""
    text = re.sub(".\b", "", rendered.stdout)  # overstrikes, if man kept any
    too_wide = [line for line in text.splitlines() if len(line) > 80]
    assert too_wide == [], f"{len(too_wide)} lines past 80 columns, up to {max(map(len, too_wide))}"
    assert "`" not in text


def test_vocabulary_man_page_renders():
    rendered = subprocess.run(["man", "-l", os.path.join(ROOT, "man", "celops.7")], capture_output=True, text=True,
                              env=dict(os.environ, MANPAGER="cat", PAGER="cat"))
    assert rendered.returncode == 0 and "celops-gap" in rendered.stdout


WITHOUT_EXAMPLES = {"cq-ls"}  # its SYNOPSIS says it all


@pytest.mark.parametrize("command", COMMANDS)
def test_man_page_examples_keep_their_lines(command):
    """EXAMPLES are one command a line (no-fill), not run together into one paragraph."""
    with open(os.path.join(ROOT, "man", f"{command}.1")) as page:
        lines = page.read().splitlines()
    if command in WITHOUT_EXAMPLES:
        assert ".SH EXAMPLES" not in lines  # when it gets some, it gets this test too
        return
    assert lines[lines.index(".SH EXAMPLES") + 1] == ".nf"


def test_every_command_declares_the_records_it_writes():
    """Its man RECORDS section is generated from COMMAND_RECORDS, never written in build_parser."""
    from celops.records import COMMAND_RECORDS, RECORDS, fields_written

    missing = sorted(set(COMMANDS) - set(COMMAND_RECORDS))
    assert not missing, f"add {missing} to COMMAND_RECORDS in celops/records.py"
    assert not set(COMMAND_RECORDS) - set(COMMANDS), "COMMAND_RECORDS names a command that is not registered"
    for command, kinds in COMMAND_RECORDS.items():
        parser = importlib.import_module(f"celops.commands.{COMMANDS[command]}").build_parser()
        assert "RECORDS" not in dict(parser.man_sections), f"{command}: RECORDS is generated, drop it"
        for kind in kinds:
            assert fields_written(command, kind), (command, kind)  # names only fields RECORDS[kind] has
    for kind, spec in RECORDS.items():
        named = {producer.split()[0] for producer in spec["produced_by"].split(", ")}
        declared = {command for command, kinds in COMMAND_RECORDS.items() if kind in kinds}
        assert named == declared, f"RECORDS[{kind!r}]['produced_by'] and COMMAND_RECORDS disagree"
