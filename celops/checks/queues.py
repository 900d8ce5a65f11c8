"""Queue checks: consumers, backlog and age, redeliveries on Redis, and the pidbox's bindings and leaks."""

import time

from celops.checks import check, finding
from celops.checks.facts import DEFAULT_VISIBILITY_TIMEOUT, MAILBOX_BINDING, REPLY_BINDING
from celops.checks.workers import mailboxes

REDIS_CAVEATS = "celery docs: Using Redis, Caveats (visibility timeout)"
# A reply list nobody read for this long is left behind: celery's control_queue_expires.
REPLY_LEAK_SECONDS = 10


def visibility_timeout(facts):
    """The Redis visibility_timeout the workers use (their conf), else -A's, else kombu's default."""
    layout = facts.values.get("layout") or {}
    seen = []
    for replies in (facts.values.get("replies") or {}).get("conf", {}).values():
        options = (replies[0] or {}).get("broker_transport_options") if isinstance(replies[0], dict) else None
        if isinstance(options, dict) and isinstance(options.get("visibility_timeout"), (int, float)):
            seen.append(float(options["visibility_timeout"]))
    if seen:
        return min(seen)
    return float(layout.get("visibility_timeout") or DEFAULT_VISIBILITY_TIMEOUT)


def _consumers(facts, record):
    """The queue's consumers: RabbitMQ says; on Redis the workers' active_queues do."""
    if record.get("consumers") is not None:
        return record["consumers"]
    active_queues = facts.need("replies")["active_queues"]
    return sum(1 for replies in active_queues.values()
               if any(isinstance(queue, dict) and queue.get("name") == record["queue"] for queue in replies[0] or ()))


@check("queues.consumers", "no queue holds messages without a consumer (they would wait forever)",
       severity="crit for a queue with messages and no consumer",
       source="celery docs: Routing Tasks; Workers Guide (-Q, add_consumer)",
       hint="start a worker with -Q QUEUE, or cctl add_consumer QUEUE; cq-peek QUEUE shows what waits")
def consumers(facts, args):
    for record in facts.need("queues"):
        if record["messages"] and _consumers(facts, record) == 0:
            yield finding("crit", record["queue"], f"{record['messages']} messages and no consumer",
                          record["messages"], 0, hint=f"start a worker with -Q {record['queue']}, or cctl "
                          f"add_consumer {record['queue']}; cq-peek {record['queue']} shows what waits")


@check("queues.backlog", "no queue holds more than --max messages",
       severity="warn above --max, crit above 10 times it", option="--max",
       source="celery docs: Monitoring and Management Guide (queue length)",
       hint="add workers or concurrency for the queue; cq-len --watch 5 QUEUE follows it")
def backlog(facts, args):
    for record in facts.need("queues"):
        if record["messages"] > args.max:
            severity = "crit" if record["messages"] > 10 * args.max else "warn"
            yield finding(severity, record["queue"], f"{record['messages']} messages waiting", record["messages"],
                          args.max)


@check("queues.age", "the oldest message of a queue has not waited past its eta for more than --max-age "
                     "(Redis; celery's messages carry no sent time, so one without an eta has no age)",
       severity="warn above --max-age", option="--max-age", source="seed: on-call practice", kind="redis",
       hint="the queue's consumers do not keep up: cq-peek QUEUE, cctl active_queues")
def age(facts, args):
    now = time.time()
    for record in facts.need("queues"):
        eta = _epoch(record.get("oldest_eta"))
        if eta is not None and now - eta > args.max_age:
            waited = round(now - eta, 1)
            yield finding("warn", record["queue"], f"the oldest message is {waited:g}s past its eta", waited,
                          args.max_age)


@check("queues.unacked", "no delivered message has stayed unacknowledged longer than visibility_timeout "
                         "(Redis restores it: it runs again)",
       severity="warn when any has", source=REDIS_CAVEATS, kind="redis",
       hint="long tasks with acks_late need a visibility_timeout longer than they run "
            "(broker_transport_options); cctl active shows what runs")
def unacked(facts, args):
    timeout = visibility_timeout(facts)
    oldest_allowed = time.time() - timeout
    overdue = [delivered for delivered in facts.need("layout")["unacked_delivered"] if delivered < oldest_allowed]
    if overdue:
        yield finding("warn", "unacked", f"{len(overdue)} messages delivered more than {timeout:g}s ago and still "
                                         "unacknowledged: they will be delivered again", len(overdue), timeout)


@check("queues.eta", "no ETA or countdown task is due further away than visibility_timeout (Redis redelivers it "
                     "every visibility_timeout until then: it runs more than once)",
       severity="warn for each worker holding such tasks", source=REDIS_CAVEATS, kind="redis",
       hint="raise visibility_timeout above the longest countdown, or schedule far tasks with celery beat")
def eta(facts, args):
    timeout = visibility_timeout(facts)
    now = time.time()
    for host, replies in sorted(facts.need("replies")["scheduled"].items()):
        far = [item for item in replies[0] or () if isinstance(item, dict)
               and (_epoch(item.get("eta")) or now) - now > timeout]
        if far:
            furthest = round(max(_epoch(item["eta"]) for item in far) - now, 1)
            first = (far[0].get("request") or {}).get("name")
            yield finding("warn", host, f"{len(far)} scheduled tasks (e.g. {first}) due in up to {furthest:g}s, "
                                        f"beyond the visibility_timeout of {timeout:g}s", furthest, timeout)


@check("queues.binding", "every member of kombu's pidbox binding sets splits into routing key, pattern and queue "
                         "with the workers' sep (one that does not breaks every broadcast reply, for everyone)",
       severity="crit for each member that does not", source="seed: a client with another sep "
                                                            "(kombu 'not enough values to unpack')",
       kind="redis", hint="remove the member (the hint of each finding names the command)")
def binding(facts, args):
    layout = facts.need("layout")
    sep = layout["sep"].encode()
    for key, members in ((REPLY_BINDING, layout["reply_bindings"]), (MAILBOX_BINDING, layout["mailbox_bindings"])):
        for member in members:
            parts = member.split(sep)
            if len(parts) != 3 or not parts[2]:
                shown = member.decode("utf-8", "backslashreplace")
                full_key = layout["prefix"] + key
                yield finding("crit", shown, f"binding member of {full_key} that the workers cannot split "
                                             f"with sep {layout['sep']!r}", hint=(
                                  f"redis-cli -n {layout['db']} SREM {_shell(full_key)} {_shell(member)}"))


@check("queues.leaks", "no reply queue of remote control is left behind (Redis: a *.reply.celery.pidbox list "
                       "that no binding names or nobody read for 10 s; RabbitMQ: such a queue without consumer), "
                       "and on Redis no mailbox binding member of a worker that does not answer ping (kombu "
                       "removes a worker's at shutdown: one left is a worker killed, or one that hangs)",
       severity="warn with their count", source="seed: celery issue 6089 (orphaned reply keys); kombu's Redis "
                                                 "fanout bindings (_kombu.binding.celery.pidbox)",
       hint="remove them (the hint of each finding names the command); cctl cleans up after itself")
def leaks(facts, args):
    layout = facts.need("layout")
    if facts.kind == "redis":
        named = {member.split(layout["sep"].encode())[-1].decode("utf-8", "replace")
                 for member in layout["reply_bindings"]}
        leaked = sorted(key for key, (_, idle) in layout["reply_keys"].items()
                        if key[len(layout["prefix"]):].split(layout["sep"])[0] not in named
                        or (idle or 0) > REPLY_LEAK_SECONDS)
        remove = f"redis-cli -n {layout['db']} DEL " + " ".join(_shell(key) for key in leaked[:20])
    else:
        leaked = sorted(queue["name"] for queue in layout["pidbox_queues"]
                        if queue["name"].endswith(".reply.celery.pidbox") and not queue.get("consumers"))
        remove = "rabbitmqctl delete_queue NAME (each)"
    if leaked:
        yield finding("warn", "reply queues", f"{len(leaked)} reply queues left behind: {_some(leaked)}",
                      len(leaked), 0, hint=remove)
    if facts.kind == "redis" and facts.has("replies"):
        yield from _left_mailboxes(facts, layout)


def _left_mailboxes(facts, layout):
    """Mailbox binding members of workers that neither answered ping nor were named by -d (workers.ping's)."""
    answered = facts.values["replies"]["ping"]
    left = {worker: member for worker, member in mailboxes(facts).items()
            if worker not in answered and worker not in facts.expected}
    if left:
        key = layout["prefix"] + MAILBOX_BINDING
        members = " ".join(_shell(left[worker]) for worker in sorted(left)[:20])
        yield finding("warn", "mailbox bindings", f"{len(left)} mailbox binding members of workers that did not "
                                                  f"answer ping (killed without a shutdown, or hung): "
                                                  f"{_some(sorted(left))}", len(left), 0,
                      hint=f"cctl ping -d WORKER to be sure it is gone, then redis-cli -n {layout['db']} SREM "
                           f"{_shell(key)} {members}")


def _some(names):
    """The first five names, and how many more."""
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def _epoch(iso):
    """An ISO 8601 time (as celery sends eta) as epoch seconds; None when it is not one."""
    from celops.core.results import parse_time

    moment = parse_time(iso)
    return None if moment is None else moment.timestamp()


def _shell(text):
    """``text`` (str or bytes) quoted for bash: $'...' with \\xNN escapes when it holds control bytes such as
    kombu's sep."""
    import shlex

    raw = text if isinstance(text, bytes) else text.encode()
    if all(32 <= byte < 127 for byte in raw):
        return shlex.quote(raw.decode())
    return "$'" + "".join(chr(byte) if 32 <= byte < 127 and chr(byte) not in "\\'" else f"\\x{byte:02x}"
                          for byte in raw) + "'"
