"""Worker checks: they answer, send heartbeats on time with clocks that agree, and run the same code."""

from celops.checks import check, finding

MONITORING = "celery docs: Monitoring and Management Guide (userguide/monitoring)"
MAILBOX_SUFFIX = ".celery.pidbox"


def known_workers(facts):
    """{hostname: how it is known}: ping replies, -d, and (RabbitMQ) every worker mailbox on the broker.

    A RabbitMQ mailbox goes with its worker's connection, so one that is there
    is a worker that is there. A Redis mailbox binding stays when its worker was
    killed: one without an answer is a leak (queues.leaks), not a worker.
    """
    known = {hostname: "answered ping" for hostname in facts.need("replies")["ping"]}
    for hostname in facts.expected:
        known.setdefault(hostname, "named by -d")
    if facts.kind != "redis":
        for hostname in mailboxes(facts):
            known.setdefault(hostname, "has a mailbox on the broker")
    return known


def mailboxes(facts):
    """{worker: its remote-control mailbox}: Redis binding members (bytes), RabbitMQ pidbox queue names."""
    if not facts.has("layout"):
        return {}
    layout = facts.values["layout"]
    if facts.kind == "redis":
        named = {member.split(layout["sep"].encode())[-1].decode("utf-8", "replace"): member
                 for member in layout["mailbox_bindings"]}
    else:
        named = {queue["name"]: queue["name"] for queue in layout["pidbox_queues"]}
    return {name[:-len(MAILBOX_SUFFIX)]: mailbox for name, mailbox in named.items()
            if name.endswith(MAILBOX_SUFFIX) and not name.endswith(".reply" + MAILBOX_SUFFIX)}


@check("workers.ping", "workers answer ping: at least one, --expect-workers N of them, each named by -d, "
                       "and (RabbitMQ) each worker whose mailbox queue is on the broker",
       severity="crit when none answers, fewer than --expect-workers do, or one named by -d does not; warn for "
                "a RabbitMQ mailbox queue without an answering worker (stopped or hung)",
       option="--expect-workers, -d, --reply-wait", source=MONITORING,
       hint="cctl ping -d WORKER; look at the worker's host (is it running, or stopped?)")
def ping(facts, args):
    answered = facts.need("replies")["ping"]
    known = known_workers(facts)
    if not answered:
        yield finding("crit", "workers", f"no worker answered ping within {args.reply_wait:g}s", 0,
                      args.expect_workers)
    elif args.expect_workers and len(answered) < args.expect_workers:
        yield finding("crit", "workers", f"{len(answered)} workers answered ping, {args.expect_workers} expected",
                      len(answered), args.expect_workers)
    for hostname, how in sorted(known.items()):
        if hostname in answered:
            continue
        severity = "crit" if how == "named by -d" else "warn"
        yield finding(severity, hostname, f"{how}, but did not answer ping within {args.reply_wait:g}s")
    if answered and not (args.expect_workers and len(answered) < args.expect_workers):
        yield finding("ok", "workers", f"{len(answered)} workers answered ping", len(answered), args.expect_workers)


@check("workers.heartbeat", "every known worker sends a heartbeat during the sample (each is asked for one "
                            "at its start)",
       severity="warn for a worker with no heartbeat in the --sample seconds", option="--sample",
       source=MONITORING + ": worker-heartbeat; celery.events.state HEARTBEAT_EXPIRE_WINDOW",
       hint="a worker without heartbeats is stopped, overloaded, or runs --without-heartbeat: cctl stats -d WORKER")
def heartbeat(facts, args):
    sample = facts.need("events")
    beating = {record.get("hostname") for record in sample["heartbeats"]}
    for hostname, how in sorted(known_workers(facts).items()):
        if hostname not in beating:
            yield finding("warn", hostname, f"{how}, but sent no heartbeat in the {sample['seconds']:g}s sample",
                          None, sample["seconds"])


@check("workers.clock", "the workers' clocks agree with this host's and with each other (heartbeat timestamp "
                        "against the time it was received)",
       severity="warn when a worker's clock, or the spread between workers, is off by more than --max-skew",
       option="--max-skew", source="celery.events.state HEARTBEAT_DRIFT_MAX (the 'Substantial drift' warning)",
       hint="run NTP (chrony, systemd-timesyncd) on every worker host: ETA tasks and heartbeats rely on the clocks")
def clock(facts, args):
    skews = {}
    for record in facts.need("events")["heartbeats"]:
        stamp, received = record.get("timestamp"), record.get("local_received")
        if isinstance(stamp, (int, float)) and isinstance(received, (int, float)):
            skews[record["hostname"]] = round(stamp - received, 3)
    for hostname, skew in sorted(skews.items()):
        if abs(skew) > args.max_skew:
            yield finding("warn", hostname, f"clock {abs(skew):g}s {'ahead of' if skew > 0 else 'behind'} this host's",
                          skew, args.max_skew)
    if len(skews) > 1:
        spread = round(max(skews.values()) - min(skews.values()), 3)
        if spread > args.max_skew:
            yield finding("warn", "workers", f"the workers' clocks are up to {spread:g}s apart", spread, args.max_skew)


@check("workers.duplicate", "no two workers share a name (both answer every broadcast under it)",
       severity="warn for a name that answered ping more than once",
       source="celery DuplicateNodenameWarning (celery.app.control)",
       hint="give every worker a unique -n name, e.g. -n worker1@%h")
def duplicate(facts, args):
    for hostname, replies in sorted(facts.need("replies")["ping"].items()):
        if len(replies) > 1:
            yield finding("warn", hostname, f"{len(replies)} workers answer to the name {hostname}", len(replies), 1)


@check("workers.versions", "the workers run one celery version (heartbeats' sw_ver)",
       severity="warn when they differ", source="seed: a half-finished deploy",
       hint="finish the deploy: restart the workers still on the old version")
def versions(facts, args):
    by_version = {}
    for record in facts.need("events")["heartbeats"]:
        by_version.setdefault(str(record.get("sw_ver")), set()).add(record["hostname"])
    if len(by_version) > 1:
        described = "; ".join(f"{version}: {', '.join(sorted(hosts))}" for version, hosts in sorted(by_version.items()))
        yield finding("warn", "workers", f"celery versions differ: {described}", sorted(by_version))


@check("workers.registered", "workers that consume the same queue have the same registered tasks",
       severity="warn for each worker lacking tasks that another consumer of its queue has",
       source="seed: a half-finished deploy (celery docs: Workers Guide, inspecting workers)",
       hint="finish the deploy: restart the workers on the new code (cctl registered --each shows each set)")
def registered(facts, args):
    replies = facts.need("replies")
    # each item is "NAME [rate_limit=...]" with celery's default taskinfoitems
    tasks = {host: {str(item).split(" ", 1)[0] for item in _first(reply) or ()}
             for host, reply in replies["registered"].items()}
    consumers = {}
    for host, reply in replies["active_queues"].items():
        for queue in _first(reply) or ():
            if isinstance(queue, dict) and host in tasks:
                consumers.setdefault(queue.get("name"), []).append(host)
    lacking = {}
    for queue, hosts in consumers.items():
        union = set().union(*(tasks[host] for host in hosts))
        for host in hosts:
            lacking.setdefault(host, set()).update(union - tasks[host])
    for host, names in sorted(lacking.items()):
        if names:
            shown = ", ".join(sorted(names)[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            yield finding("warn", host, f"lacks {len(names)} tasks its queues' other workers run: {shown}",
                          len(names))


@check("workers.events", "workers send task events (what cev-dump, cev-cam and Flower show)",
       severity="warn for a worker that finished tasks during the sample without a task event",
       source=MONITORING + ": Events", option="--sample",
       hint="start workers with -E (worker_send_task_events), or cev-dump --enable-events while watching")
def events(facts, args):
    sample = facts.need("events")
    processed = {}
    for record in sample["heartbeats"]:
        if isinstance(record.get("processed"), int):
            processed.setdefault(record["hostname"], []).append(record["processed"])
    for host, counts in sorted(processed.items()):
        if max(counts) > min(counts) and host not in sample["task_senders"]:
            yield finding("warn", host, f"finished {max(counts) - min(counts)} tasks during the sample but sent "
                                        "no task event: task events are off")


def _first(replies):
    """The first reply of a worker (a duplicate name's second is workers.duplicate's business)."""
    return replies[0] if replies else None
