"""Look up task results in the result backend: by id, or list and count them by state, name and age.

The backend is --backend URL, else $CELOPS_RESULT_BACKEND, else the -A app's
result_backend; celery's own backend classes read it, with their key prefix,
serializer and table names, so every backend celery supports can look up ids.
Tested: Redis, and SQLAlchemy databases (db+sqlite://, db+postgresql://; pip
install 'celops[db]'). No task code is imported, except with -A: the app's
module is imported to read its settings, with whatever it imports itself
(tasks defined in it included); --backend without -A imports nothing of yours.

cres ID... (or cres - reading ids, or records with a uuid, from standard
input) prints one result record per id, in order; an id the backend does not
know is "state":"PENDING", as celery reports it, with "known":false.

Without ids, cres lists the stored results that --state, --name and --since
select (-n stops early), or with --count counts them by state (and name with
--by-name). Redis lists with SCAN over the meta keys and MGET, never KEYS,
in no particular order; a database with one SQL query, oldest first. Other
backends can only look up ids.
"""

import datetime
import re

from celops.core import cli
from celops.core.exits import ExitStatus, UsageError

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_DURATION_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text):
    """``90``, ``30s``, ``15m``, ``2h``, ``7d`` as seconds."""
    import argparse

    match = _DURATION.match(text.strip())
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 90, 30s, 15m, 2h, 7d)")
    return float(match.group(1)) * _DURATION_SECONDS[match.group(2)]


def build_parser():
    from celops.core.results import add_backend_options

    parser = cli.command_parser("cres", __doc__, broker=False, timeout=10.0,
                                timeout_help="give up on the result backend after this long (default 10)")
    parser.add_argument("-A", "--app", metavar="MODULE[:ATTR]",
                        help="Celery app whose result_backend and result settings are used")
    parser.add_argument("ids", nargs="*", metavar="ID",
                        help="task ids to look up; - reads ids (or records with a uuid) from standard input")
    add_backend_options(parser)
    select = parser.add_argument_group("listing (without ids)")
    select.add_argument("--state", action="extend", type=cli.name_list("state"), metavar="STATE[,STATE...]",
                        help="only results in these states, e.g. FAILURE (repeatable; comma-separated)")
    select.add_argument("--name", action="extend", type=cli.name_list("task name glob"), metavar="GLOB[,GLOB...]",
                        help="only tasks whose name matches (needs result_extended: names are stored only then)")
    select.add_argument("--since", type=duration, metavar="DURATION",
                        help="only results done within this long (90, 30s, 15m, 2h, 7d)")
    select.add_argument("-n", "--limit", type=cli.whole_number(1), metavar="N", help="at most N results")
    select.add_argument("--count", action="store_true", help="print counts by state instead of results")
    select.add_argument("--by-name", action="store_true", help="with --count: by state and task name")
    forget = parser.add_argument_group("removing results")
    forget.add_argument("--forget", action="store_true",
                        help="delete the selected results from the backend (AsyncResult.forget); asks first")
    forget.add_argument("-f", "--force", action="store_true", help="--forget without asking (needed without a TTY)")
    forget.add_argument("--dry-run", action="store_true", help="with --forget: print what would go; delete nothing")
    cli.document_names_input(parser)
    parser.man_sections += [
        ("PICKLE",
         "Pickled results are never unpickled unless --unsafe-pickle is given: unpickling runs whatever "
         "code the stored bytes name, and a result backend is writable by every worker."),
        ("REMOVING RESULTS",
         "--forget deletes each selected result that the backend knows. On a terminal cres shows the "
         "counts and asks; without a terminal (ids from a pipe, cron) it refuses unless -f/--force: a usage "
         "error, exit 2. --dry-run prints exactly the records --forget would print and deletes nothing."),
        ("EXAMPLES",
         "  cres 3f2a9c1e-...                                   # one task's result\n"
         "  cev-dump --type task-failed --limit 10 | cres -\n"
         "  cres --backend redis://cache:6379/1 --state FAILURE --since 1h\n"
         "  cres -A proj --count --by-name\n"
         "  cres -A proj --state FAILURE --name 'billing.*' | csend -   # re-run them\n"
         "  cres -A proj --state SUCCESS --since 30d --forget -f"),
    ]
    return parser


def run(ctx):
    from celops.core.results import Filter, open_store

    args = ctx.args
    _check_options(args)
    store = open_store(args.backend, args.app, args.unsafe_pickle, args.timeout)
    reader = None
    if args.ids:
        reader = _id_reader(ctx) if args.ids == ["-"] else None
        ids = list(reader.values(["uuid", "id", "task_id"], ids=True)) if reader else args.ids
        records = store.lookup(list(dict.fromkeys(ids)))
    else:
        since = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=args.since) \
            if args.since else None
        records = store.select(Filter(args.state, args.name, since), None if args.count else args.limit)
    if args.count:
        _write_counts(ctx, records, args.by_name)
    elif args.forget:
        _forget(ctx, store, list(records))
    else:
        for record in records:
            ctx.out.write(record)
    if store.undecoded and not args.unsafe_pickle:
        ctx.warn(f"{store.undecoded} stored value(s) not decoded (pickle); --unsafe-pickle reads them, if you "
                 "trust the backend")
    return ExitStatus.DATA_ERROR if reader and reader.bad_lines else ExitStatus.OK


def _check_options(args):
    ids_given = bool(args.ids)
    if "-" in args.ids and args.ids != ["-"]:
        raise UsageError("give task ids as arguments or - for standard input, not both")
    listing = [option for option, value in (("--state", args.state), ("--name", args.name),
                                            ("--since", args.since), ("-n", args.limit)) if value]
    if ids_given and (listing or args.count):
        raise UsageError(f"{(listing or ['--count'])[0]} selects stored results: give it without task ids")
    if not ids_given and not listing and not args.count:
        raise UsageError("give task ids (or - to read them), or select results with --state, --name, --since "
                         "or --count")
    if args.by_name and not args.count:
        raise UsageError("--by-name goes with --count")
    if args.count and args.forget:
        raise UsageError("--count and --forget do not go together")
    if (args.force or args.dry_run) and not args.forget:
        raise UsageError(f"{'-f' if args.force else '--dry-run'} goes with --forget")


def _id_reader(ctx):
    from celops.core.ndjson import Reader

    return Reader(["-"], ctx.io.stdin, ctx.warn)


def _write_counts(ctx, records, by_name):
    counts = {}
    for record in records:
        key = (record.get("state"), record.get("name")) if by_name else (record.get("state"),)
        counts[key] = counts.get(key, 0) + 1
    for key, count in sorted(counts.items(), key=lambda item: (-item[1], str(item[0]))):
        record = {"type": "count", "state": key[0]}
        if by_name:
            record["name"] = key[1]
        ctx.out.write({**record, "count": count})


def _forget(ctx, store, records):
    """Forget the known results among ``records``, with cq-purge's consent rules (unknown ids are left be)."""
    from celops.core.consent import confirm
    from celops.core.redact import redact_url

    known = [record for record in records if record.get("known", True)]
    marked = [{**record, "forgotten": True} if record.get("known", True) else record for record in records]
    if ctx.args.dry_run:
        for record in marked:
            ctx.out.write({**record, "dry_run": True})
        return
    if not ctx.args.force:
        by_state = {}
        for record in known:
            by_state[record["state"]] = by_state.get(record["state"], 0) + 1
        lines = [f"about to forget from {redact_url(store.url)}:",
                 *(f"  {state}: {count} results" for state, count in sorted(by_state.items(), key=str))]
        confirm(ctx, "forget", "forgotten", lines, f"forget {len(known)} results?")
    store.forget([record["uuid"] for record in known])
    for record in marked:
        ctx.out.write(record)


def main(argv=None, io=None):
    return cli.execute(build_parser, run, argv, io)
