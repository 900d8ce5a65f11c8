"""``python -m celops.commands NAME ARGS...``: what bin/<NAME> runs from a checkout."""

import importlib
import sys

from celops.commands import COMMANDS

if __name__ == "__main__":
    name = sys.argv[1] if len(sys.argv) > 1 else ""
    if name not in COMMANDS:
        sys.exit(f"usage: python -m celops.commands {{{','.join(COMMANDS)}}} [ARGS...]")
    sys.exit(importlib.import_module(f"celops.commands.{COMMANDS[name]}").main(sys.argv[2:]))
