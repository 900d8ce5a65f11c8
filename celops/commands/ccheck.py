"""Check a Celery cluster for the known failure modes; one finding record per problem, for on-call and cron.

ccheck looks at the broker, the workers, the queues, a short sample of task
events and the workers' configuration, all at once, and prints a finding
for each problem it sees (with -v, for each check that passed too). Each
finding names its check, the subject (a queue, a worker, a task name), the
value seen and the threshold, and a hint saying what to do, with the celops
command that does it where there is one.

The whole run finishes within -t (default 5 s) even when parts of the
cluster do not answer: a check that could not run is a finding of its own
with "severity": "unknown", saying why. The exit status is that of the worst
finding (see EXIT STATUS), so cron and monitoring can page on it.
"""

from celops.core import cli
from celops.core.exits import ExitStatus, UsageError

# The exit status of the worst finding.
SEVERITY_STATUS = {"ok": ExitStatus.OK, "info": ExitStatus.OK, "unknown": ExitStatus.FAILURE,
                   "warn": ExitStatus.FAILURE, "crit": ExitStatus.CRITICAL}


def fraction(text):
    """A number from 0 to 1 (a rate)."""
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be from 0 to 1: {text!r}")
    return value


def build_parser():
    from celops.core.rabbit import add_management_option

    parser = cli.command_parser(
        "ccheck", __doc__, timeout=5.0, formats={"prom": "the Prometheus text exposition format, one gauge a check"},
        timeout_help="the whole run's deadline in seconds (default 5.0): what has not answered by then is "
                     "an unknown finding")
    selection = parser.add_argument_group("which checks")
    selection.add_argument("--check", action="extend", type=cli.name_list("check id"), metavar="ID,ID",
                           help="run only these checks (comma-separated, repeatable; an area such as queues "
                                "names all of its checks)")
    selection.add_argument("--skip", action="extend", type=cli.name_list("check id"), metavar="ID,ID",
                           help="leave these checks (or areas) out")
    selection.add_argument("--list", action="store_true", help="list every check as a check record, and exit")
    selection.add_argument("-v", "--verbose", action="store_true",
                           help="print the ok findings too (without it only info, warn, crit and unknown ones)")
    limits = parser.add_argument_group("thresholds")
    cli.add_destination_option(
        limits, "workers that must answer (comma-separated, repeatable): crit for each that does not")
    limits.add_argument("--expect-workers", type=cli.whole_number(1), metavar="N",
                        help="crit when fewer than N workers answer ping")
    limits.add_argument("--max", type=cli.whole_number(0), default=1000, metavar="N",
                        help="messages a queue may hold (default 1000): warn above, crit above 10 times it")
    limits.add_argument("--max-age", type=cli.positive_float, default=300.0, metavar="SECONDS",
                        help="how long past its eta the oldest message of a queue may wait (default 300)")
    limits.add_argument("--max-latency", type=cli.positive_float, default=0.1, metavar="SECONDS",
                        help="the broker's round trip (default 0.1)")
    limits.add_argument("--max-memory", type=cli.positive_float, default=80.0, metavar="PERCENT",
                        help="Redis memory use, in percent of maxmemory (default 80; crit above 95)")
    limits.add_argument("--max-skew", type=cli.positive_float, default=16.0, metavar="SECONDS",
                        help="clock skew of a worker against this host, or between workers (default 16, "
                             "celery's HEARTBEAT_DRIFT_MAX)")
    limits.add_argument("--max-runtime", type=cli.positive_float, default=300.0, metavar="SECONDS",
                        help="how long a task may run (default 300)")
    limits.add_argument("--max-failure-rate", type=fraction, default=0.1, metavar="RATE",
                        help="failed / finished of a task name in the sample, from 0 to 1 (default 0.1)")
    limits.add_argument("--max-retries", type=cli.whole_number(0), default=10, metavar="N",
                        help="retries of a task name in the sample (default 10)")
    limits.add_argument("--sample", type=cli.positive_float, default=2.0, metavar="SECONDS",
                        help="how long to listen to events (default 2.0; at most what -t leaves)")
    limits.add_argument("--reply-wait", type=cli.positive_float, default=1.0, metavar="SECONDS",
                        help="how long to wait for the workers' replies to ping, stats, conf, registered, "
                             "active_queues, active and scheduled (default 1.0; with -d, until they all did)")
    parser.add_argument("--textfile", metavar="PATH",
                        help="write the Prometheus format to PATH atomically, for node_exporter's textfile "
                             "collector; implies --format prom")
    add_management_option(parser)
    parser.man_sections[:0] = [("CHECKS", checks_section())]
    parser.man_sections += [
        ("FINDINGS",
         "One finding record per problem, check by check in the order of CHECKS; with -v also one \"ok\" finding per "
         "check that found nothing. An \"unknown\" finding is a check that could not run; its message says why "
         "(the broker cannot be reached, or a part of the cluster did not answer within -t). Without -v, the "
         "unknown findings of one area that share their reason are printed as one, whose check is the area "
         "(\"queues\") and whose value is how many checks could not run: an unreachable broker is one crit "
         "finding and one unknown line per area, not one per check. The exit status and --format prom still "
         "count each check. --list writes one check record per check instead (see celops(7))."),
        ("SEVERITIES AND EXIT STATUS",
         "The exit status is that of the worst finding: 0 when every finding is ok or info; 1 when one is warn "
         "or unknown (a check that could not run has not shown the cluster healthy); 3 when one is crit, "
         "so that cron and monitoring can tell \"look at it\" from \"page someone\". 2 stays the usage "
         "error."),
        ("PROMETHEUS",
         "--format prom (and --textfile) write one gauge a check, celops_check_severity{check}: 0 ok, 1 info, "
         "2 warn, 3 crit, -1 unknown (its worst finding); celops_check_findings{check}, its findings other "
         "than ok; and celops_check_duration_seconds, how long the run took."),
        ("HOW THE FACTS ARE GATHERED",
         "First the broker is reached (an unreachable broker ends the run at once: broker.reachable is crit, "
         "the rest unknown, one line per area). Then, in parallel: one remote-control session broadcasts ping, stats, conf, "
         "registered, active_queues, active and scheduled and collects the replies for --reply-wait seconds; "
         "the queues are measured as cq-len does; the pidbox bindings, reply queues and unacked deliveries are "
         "read (Redis: SMEMBERS, one SCAN and one ZRANGE; RabbitMQ: the management API); and --sample seconds "
         "of events are read after asking every worker for a heartbeat. Nothing on the broker is changed: "
         "ccheck's own reply queue is removed when it is done."),
        ("EXAMPLES",
         "  ccheck\n  ccheck -v --format table\n  ccheck -d w1@host,w2@host --max 500 || page-someone\n"
         "  ccheck --check queues,broker.memory --skip queues.age\n"
         "  ccheck --textfile /var/lib/node_exporter/ccheck.prom    # from cron\n"
         "  ccheck | jq -r 'select(.severity == \"crit\") | .hint'"),
    ]
    return parser


def checks_section():
    """The man page's CHECKS: each check with its severity rule, threshold option, source and hint."""
    from celops.checks import all_checks

    lines = ["Each check's id is AREA.NAME; --check and --skip take ids or areas."]
    for spec in all_checks().values():
        only = f" ({spec.kind} only)" if spec.kind else ""
        option = f" Threshold: {spec.option}." if spec.option else ""
        lines.append(f"  {spec.id}  {spec.summary}{only}. Severity: {spec.severity}.{option} "
                     f"Source: {spec.source}. Hint: {spec.hint}.")
    return lines[0] + "\n\n" + "\n".join(lines[1:])


def selected_checks(args):
    """The checks --check and --skip leave, in registration order; an unknown id is a usage error."""
    from celops.checks import AREAS, all_checks

    checks = all_checks()
    for given in (args.check or []) + (args.skip or []):
        if given not in checks and given not in AREAS:
            raise UsageError(f"no check {given!r} (ccheck --list lists them)")

    def named(spec, names):
        return spec.id in names or spec.id.split(".")[0] in names

    return [spec for spec in checks.values()
            if (not args.check or named(spec, args.check)) and not named(spec, args.skip or [])]


def run(ctx):
    from celops.checks import fold_unknowns, judge, worst
    from celops.checks.facts import gather
    from celops.core.redact import redact

    args = ctx.args
    if args.textfile:
        from celops.core.outfiles import check_writable

        args.format = "prom"
        check_writable(args.textfile)
    selected = selected_checks(args)
    if args.list:
        for spec in selected:
            ctx.out.write({"type": "check", "check": spec.id, "summary": spec.summary, "severity": spec.severity,
                           "option": spec.option, "applies_to": spec.kind, "source": spec.source,
                           "hint": spec.hint})
        return ExitStatus.OK
    facts = gather(ctx.broker, args, ctx.warn)
    records = [redact(record) for record in judge(selected, facts, args, debug=args.debug)]
    if args.format == "prom":
        write_prometheus(ctx, records, facts.values.get("gathered_in", 0.0))
    else:
        for record in records if args.verbose else fold_unknowns(records):
            if args.verbose or record["severity"] != "ok":
                ctx.out.write(record)
    return SEVERITY_STATUS[worst(records)]


def write_prometheus(ctx, records, duration):
    from prometheus_client import CollectorRegistry, Gauge

    from celops.checks import GAUGE, worst

    registry = CollectorRegistry(auto_describe=False)
    severity = Gauge("celops_check_severity", "Worst finding of the check: 0 ok, 1 info, 2 warn, 3 crit, -1 unknown",
                     ["check"], registry=registry)
    findings = Gauge("celops_check_findings", "Findings of the check other than ok", ["check"], registry=registry)
    Gauge("celops_check_duration_seconds", "How long the ccheck run took", registry=registry).set(duration)
    by_check = {}
    for record in records:
        by_check.setdefault(record["check"], []).append(record)
    for check_id, found in by_check.items():
        severity.labels(check_id).set(GAUGE[worst(found)])
        findings.labels(check_id).set(sum(1 for record in found if record["severity"] != "ok"))
    from celops.core.outfiles import write_metrics

    write_metrics(registry, ctx.args.textfile, ctx.io.stdout)


def main(argv=None, io=None):
    return cli.execute(build_parser, run, argv, io)
