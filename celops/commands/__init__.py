"""One module per command, each with ``build_parser()`` and ``main(argv=None) -> int``."""

# command name -> module name; the single list setup.cfg, bin/, docs and tests agree on.
COMMANDS = {
    "cev-dump": "cev_dump",
    "cev-cam": "cev_cam",
    "cev-top": "cev_top",
    "cq-ls": "cq_ls",
    "cq-len": "cq_len",
    "cq-peek": "cq_peek",
    "cq-purge": "cq_purge",
    "cq-move": "cq_move",
    "cctl": "cctl",
    "cres": "cres",
    "csend": "csend",
    "ccheck": "ccheck",
}

# Programs beside the commands, with their man page and completions too: no broker, no records.
TOOLS = {"celops-completion": "celops.completion"}
