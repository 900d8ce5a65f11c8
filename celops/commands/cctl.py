"""Send inspect and control broadcasts (not built yet: see its issue)."""

import sys

from celops.core import cli
from celops.core.exits import CelopsError


def build_parser():
    return cli.command_parser("cctl", __doc__, timeout=5.0)


def run(ctx):
    raise CelopsError("not built yet")


def main(argv=None, io=None):
    return cli.execute(build_parser, run, argv, io)


if __name__ == "__main__":
    sys.exit(main())
