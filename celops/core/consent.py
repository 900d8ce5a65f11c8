"""The one consent rule for commands that remove things (cq-purge, cres --forget).

On a terminal: show what would go and ask. Without one (a pipe, cron): refuse
unless -f/--force was given, which the caller checks before asking.
"""

from celops.core.exits import CelopsError, UsageError


def confirm(ctx, verb, past, lines, question):
    """Show ``lines`` and ask ``question`` on the terminal; refuse (exit 2) without one; a "no" is exit 1.

    ``verb`` and ``past`` name the action in plain words ("purge", "purged") for the refusals.
    """
    if not ctx.io.stdin_is_tty():
        raise UsageError(f"refusing to {verb} without a terminal to confirm on; use -f/--force "
                         "(or --dry-run to see what would go)")
    ctx.io.stderr.write("\n".join([*lines, f"{question} [y/N] "]))
    ctx.io.stderr.flush()
    answer = ctx.io.stdin.readline().decode("utf-8", "replace").strip().lower()
    if answer not in ("y", "yes"):
        raise CelopsError(f"not confirmed; nothing {past}")  # the job's own negative result
