"""The package's shape: commands share code through celops.core, never through each other."""

import ast
import os

from celops.commands import COMMANDS
from tests.support import ROOT

COMMANDS_DIR = os.path.join(ROOT, "celops", "commands")


def imported_modules(path):
    """Every module ``path`` imports (``from a import b`` counts as a and a.b), at any depth of the code."""
    tree = ast.parse(open(path).read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = "celops.commands" if node.level else node.module  # relative: only commands/ itself
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def test_no_command_imports_another_command():
    command_modules = {f"celops.commands.{module}" for module in COMMANDS.values()}
    offenders = []
    for module in COMMANDS.values():
        path = os.path.join(COMMANDS_DIR, f"{module}.py")
        offenders += [f"{module}.py imports {name}" for name in imported_modules(path) if name in command_modules]
    assert not offenders, f"move what they share into celops/core: {offenders}"
