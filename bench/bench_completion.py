#!/usr/bin/env python3
"""Shell completion: celops-completion and the generated scripts, side by side with celery's own (click).

1. Printing the scripts, as `eval "$(... )"` in ~/.bashrc does at every shell
   start: `celops-completion bash|zsh` (every command's script) against
   `_CELERY_COMPLETE=bash_source|zsh_source celery` (click's, one command).
2. Answering one TAB on an option: celops's scripts are plain shell (shtab), so
   bash answers by itself; click runs `celery` again for every TAB.

Median of RUNS whole processes, after one untimed run. No broker is involved.
Timings are reported, never asserted.
"""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.common import child_env, median_time, print_table  # noqa: E402

RUNS = 15
CELERY = os.path.join(os.path.dirname(sys.executable), "celery")
OURS_TAB = ('source completions/bash/cq-purge; COMP_WORDS=(cq-purge --dr); COMP_CWORD=1; '
            'COMP_LINE="cq-purge --dr"; COMP_POINT=${#COMP_LINE}; _celops_rejoined cq-purge --dr cq-purge; '
            'echo "${COMPREPLY[@]}"')


def timed(argv, env=None, expect=b""):
    def run():
        out = subprocess.run(argv, check=True, capture_output=True, cwd=ROOT, env=child_env(**(env or {}))).stdout
        assert expect in out, out[:200]
    return median_time(run, RUNS)[0]


def main():
    rows = []
    for shell in ("bash", "zsh"):
        ours = timed([os.path.join(ROOT, "bin", "celops-completion"), shell], expect=b"cq-purge")
        theirs = timed([CELERY], {"_CELERY_COMPLETE": f"{shell}_source"}, expect=b"_celery_completion")
        rows.append([f"print the {shell} scripts (shell start-up)", f"{ours * 1000:.0f} ms", f"{theirs * 1000:.0f} ms",
                     f"{theirs / ours:.1f}x"])
    ours = timed(["bash", "-c", OURS_TAB], expect=b"--dry-run")
    theirs = timed([CELERY], {"COMP_WORDS": "celery purge --", "COMP_CWORD": "2",
                              "_CELERY_COMPLETE": "bash_complete"}, expect=b"--force")
    rows.append(["answer one TAB on an option (bash)", f"{ours * 1000:.0f} ms", f"{theirs * 1000:.0f} ms",
                 f"{theirs / ours:.1f}x"])
    print(f"median of {RUNS} whole processes; ratio: celery's time over celops's")
    print_table(["what", "celops", "celery (click)", "ratio"], rows)


if __name__ == "__main__":
    main()
