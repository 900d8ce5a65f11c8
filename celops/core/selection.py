"""Which waiting messages an operation takes: cq-move's and cq-purge's --task, --id, - and -n.

A selection is never "everything" by accident: an empty --task or --id is a
usage error (``cli.name``), and ids read from standard input that turn out
to be none select nothing.
"""

import fnmatch
import re

from celops.core import cli

# The fields a task id is read from on standard input (cq-peek's uuid, cctl's and cev-dump's too).
ID_FIELDS = ("uuid", "id", "task_id", "request.id")


def add_selection_options(parser, verb):
    """--task, --id and ``-``: the filters both commands share (``verb``: "move", "remove")."""
    parser.add_argument("--task", action="append", type=cli.name("task name"), default=[], metavar="NAME",
                        help=f"{verb} only tasks of this name; shell globs allowed (repeatable)")
    parser.add_argument("--id", action="extend", type=cli.name_list("task id"), default=[],
                        metavar="ID[,ID...]", help=f"{verb} only these task ids (repeatable)")
    parser.add_argument("ids_from_stdin", nargs="?", choices=["-"], metavar="-",
                        help=f"{verb} only the task ids read from standard input (plain lines or records "
                             f"with {' or '.join(ID_FIELDS)})")
    cli.document_names_input(parser)


class Selection:
    """``matches(record)`` says whether a decoded message record is selected; ``limit`` caps how many."""

    def __init__(self, tasks=(), ids=None, limit=None, reader=None):
        self.tasks = list(tasks)
        self.reader = reader  # the ndjson.Reader ids came from, which counts bad lines
        self.ids = ids  # None: any id; a set (maybe empty): only those
        self.limit = limit
        self._task_pattern = re.compile("|".join(fnmatch.translate(glob) for glob in self.tasks)) \
            if self.tasks else None

    @classmethod
    def from_args(cls, ctx, limit=None):
        """The selection of --task, --id and ``-`` (ids from stdin; bad lines are reported by the reader)."""
        args = ctx.args
        ids = set(args.id) if args.id else None
        reader = None
        if args.ids_from_stdin:
            from celops.core.ndjson import Reader

            reader = Reader(["-"], ctx.io.stdin, ctx.warn)
            ids = (ids or set()) | set(reader.values(ID_FIELDS, ids=True))
        return cls(args.task, ids, limit, reader)

    def status(self, status):
        """``status``, or 65 when ids on standard input had bad lines (the good ones were still used)."""
        from celops.core.exits import ExitStatus

        if self.reader is not None and self.reader.bad_lines and status == ExitStatus.OK:
            return ExitStatus.DATA_ERROR
        return status

    @property
    def filtered(self):
        """Whether anything narrows the selection besides the limit."""
        return self._task_pattern is not None or self.ids is not None

    @property
    def nothing(self):
        """Ids were asked for and none were given: nothing is selected (never everything)."""
        return self.ids is not None and not self.ids

    def matches(self, record):
        if record.get("type") != "message":
            return not self.filtered  # a message that could not be decoded moves only with everything
        if self.ids is not None and record.get("uuid") not in self.ids:
            return False
        return self._task_pattern is None or bool(self._task_pattern.fullmatch(record.get("task") or ""))

    def describe(self):
        """The filters in plain words, for the consent prompt."""
        parts = []
        if self.tasks:
            parts.append("task " + " or ".join(self.tasks))
        if self.ids is not None:
            parts.append(f"{len(self.ids)} task id(s)")
        if self.limit is not None:
            parts.append(f"at most {self.limit}")
        return ", ".join(parts) or "every message"
