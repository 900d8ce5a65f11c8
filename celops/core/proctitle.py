"""Passwords out of the process list: ``ps`` shows every local user each command line, for as long as it runs.

A ``cev-cam -b redis://:pw@host`` runs for days, so once the options are
parsed the process title is rewritten with every URL password as ``***``,
as database clients do with theirs. Only a command line that holds a
password pays for it (setproctitle brings in ``logging``).
"""


def hide_passwords(argv):
    """Rewrite this process's title with the passwords of every URL in ``argv`` masked; a no-op without any."""
    if not any("@" in arg or "=" in arg for arg in argv):  # no credentials: not even the redaction patterns are needed
        return
    from celops.core.redact import redact_url

    masked = {arg: redact_url(arg) for arg in argv if redact_url(arg) != arg}
    if not masked:
        return
    import setproctitle

    title = setproctitle.getproctitle()
    hidden = masked_title(title, masked)
    if hidden != title:  # a caller's argv that is not this process's own (tests) leaves the title alone
        setproctitle.setproctitle(hidden)


def masked_title(title, masked):
    """``title`` with each argument in ``masked`` replaced by its masked form."""
    for arg, replacement in masked.items():
        title = title.replace(arg, replacement)
    return title
