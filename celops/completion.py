"""celops-completion bash|zsh: print the completion scripts of every celops command.

pip installs them under the environment's share/ (bash-completion and zsh's
site-functions there), where a shell started outside the venv never looks;
one line in ~/.bashrc or ~/.zshrc wires them in wherever celops is installed:

    eval "$(celops-completion bash)"     # bash
    eval "$(celops-completion zsh)"      # zsh, after compinit
"""

import os
import sys
import sysconfig

from celops import __version__
from celops.commands import COMMANDS, TOOLS
from celops.core import cli
from celops.core.exits import ConfigError

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Where setup.cfg's data_files put each shell's scripts, relative to an install's data path.
INSTALLED = {"bash": ("share", "bash-completion", "completions", "{}"), "zsh": ("share", "zsh", "site-functions", "_{}")}
CHECKED_OUT = {"bash": ("completions", "bash", "{}"), "zsh": ("completions", "zsh", "_{}")}


def script_dirs(shell):
    """Where the scripts may be: this install's data path (venv, system, --user), then a checkout."""
    roots = [sysconfig.get_path("data")]
    roots += [sysconfig.get_path("data", scheme) for scheme in (f"{os.name}_user",)
              if scheme in sysconfig.get_scheme_names()]
    candidates = [os.path.join(root, *INSTALLED[shell][:-1]) for root in roots]
    return candidates + [os.path.join(CHECKOUT, *CHECKED_OUT[shell][:-1])]


def scripts(shell):
    """The text of every command's script for ``shell``, from the first place that has them all."""
    file_name = INSTALLED[shell][-1]
    for directory in script_dirs(shell):
        paths = [os.path.join(directory, file_name.format(command)) for command in [*COMMANDS, *TOOLS]]
        if all(os.path.isfile(path) for path in paths):
            return [open(path).read() for path in paths]
    return None


def build_parser():
    parser = cli.CommandParser(prog="celops-completion", description=__doc__.strip())
    parser.man_short_description = "print the completion scripts of every celops command"
    parser.add_argument("shell", choices=("bash", "zsh"), help="the shell to print the scripts for")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.man_sections += [
        ("FILES",
         "The scripts it prints, one per command, as pip installs them under the environment's data path: "
         "share/bash-completion/completions/NAME and share/zsh/site-functions/_NAME (then, in a checkout, "
         "completions/bash and completions/zsh). A missing one is exit 78, naming the places looked in."),
        ("EXAMPLES",
         "  eval \"$(celops-completion bash)\"\n"
         "  eval \"$(celops-completion zsh)\""),
    ]
    return parser


def run(ctx):
    shell = ctx.args.shell
    texts = scripts(shell)
    if texts is None:
        raise ConfigError(f"no {shell} completion scripts in {', '.join(script_dirs(shell))}: reinstall celops")
    ctx.io.stdout.write("\n".join(texts).encode())


def main(argv=None, io=None):
    return cli.execute(build_parser, run, argv, io)


if __name__ == "__main__":
    sys.exit(main())
