"""The record vocabulary every command shares, declared once.

README.md's vocabulary table and ``man 7 celops`` are generated from this.
Times celops itself measures or computes are epoch seconds as floats; times a
worker or client sent are passed through as sent (a message's, an event's and
a scheduled item's ``eta``/``expires`` are ISO 8601 strings). A task id is
``uuid`` and a worker is ``hostname`` in every record that carries one.
Fields a record has no value for are absent or null, as each entry says.

On a terminal (or with --format table/tsv) the same records are shown as a
table: ``columns`` says which fields, in order, and how wide each may grow on a
terminal (longer values are cut there); ``details`` are fields shown together
in a last DETAILS column as ``field=value``, when present. ``layout`` is
"fixed" when every column is always shown (streams of mixed events) or
"first record" when a command shows only the columns its first record of the
type has (cq-ls, cq-len and cq-purge share the queue record).
"""

# The event types celery's workers and clients send (cev-dump --type completes them).
EVENT_TYPES = ("task-sent", "task-received", "task-started", "task-succeeded", "task-failed", "task-rejected",
               "task-revoked", "task-retried", "worker-online", "worker-heartbeat", "worker-offline")

# Events, gaps and errors share one layout, so cev-dump's table is one line per record.
EVENT_COLUMNS = {"timestamp": 12, "type": 16, "hostname": 24, "name": 28, "uuid": 36}

RECORDS = {
    "event": {
        "layout": "fixed", "columns": EVENT_COLUMNS,
        "details": ("args", "kwargs", "result", "runtime", "exception", "retries", "eta", "active", "processed",
                    "freq"),
        "produced_by": "cev-dump", "consumed_by": "cev-cam, jq",
        "summary": "One Celery event, with every field the worker sent (task.multi batches come out one "
                   "event per record, in order). `type` is the event type (task-received, worker-heartbeat...).",
        "fields": {
            "type": "str: event type, e.g. task-succeeded",
            "hostname": "str: the worker that sent it",
            "timestamp": "float: epoch seconds, the worker's clock",
            "local_received": "float: epoch seconds when celops received it",
            "clock": "int: the sender's Lamport clock",
            "uuid": "str: task id (task events)",
            "name": "str: task name (task-received/task-sent; cev-dump fills it in for later events)",
            "args, kwargs, result": "str: Python reprs, as the worker sent them (e.g. \"(2, 2)\", \"4\")",
            "eta, expires": "str or null: ISO 8601 as sent (task-sent, task-received; not epoch seconds)",
            "runtime": "float: seconds (task-succeeded)",
            "exception, traceback": "str (task-failed, task-retried)",
            "utcoffset": "float: the sender's UTC offset in hours", "pid": "int: the sender's process id",
            "...": "all other fields as sent: root_id, parent_id, retries, queue, routing_key (task-sent), "
                   "freq (s), active, processed, loadavg, sw_ident, sw_ver, sw_sys (worker events)",
        },
    },
    "celops-gap": {
        "layout": "fixed", "columns": EVENT_COLUMNS, "details": ("reason", "since", "until", "dropped"),
        "produced_by": "cev-dump", "consumed_by": "cev-cam (counted as gaps), jq",
        "summary": "Events were (or may have been) lost: a broker disconnect, restart or backlog overflow; or "
                   "the stream moved to another host without a hole (a Sentinel promotion: the demoted master "
                   "is read until it lets go, the new one already), then since = until and dropped is 0.",
        "fields": {
            "type": "\"celops-gap\"",
            "reason": "str: why, e.g. connection closed by the broker; backlog full (--buffer) first",
            "since": "float: epoch seconds, last moment known good (when the loss was seen, or the "
                     "backlog filled up)",
            "until": "float: epoch seconds, when the stream resumed (resubscribed)",
            "dropped": "int or null: events known dropped, null when unknown (cev-dump cannot count them today); "
                       "0 for a move without a hole (--on-gap exit does not exit for it)",
            "from, to": "str: the broker before and after, passwords redacted, when the stream resumed on "
                        "another host (a Sentinel promotion, the next host of a failover list)",
        },
    },
    "reply": {
        "layout": "first record", "columns": {"hostname": 32, "command": 12},
        "details": ("uuid", "name", "reply", "args", "kwargs", "time_start", "worker_pid", "eta", "item"),
        "produced_by": "cctl", "consumed_by": "cctl revoke/terminate/query_task - (uuid of --each items), jq",
        "summary": "One worker's reply to a broadcast, secrets redacted; with --each, one record per item "
                   "of a list reply instead.",
        "fields": {
            "type": "\"reply\"",
            "command": "str: the broadcast command (status sends ping)",
            "hostname": "str: the worker that replied",
            "worker": "str: the same as hostname (the name `celery inspect` users expect)",
            "reply": "any: the worker's answer (absent with --each)",
            "uuid": "str: with --each, the task id of an active, reserved, scheduled or revoked item",
            "name": "str: with --each, the task name (active, reserved, scheduled, registered items)",
            "id": "str: with --each, the same as uuid (the request's own name for it)",
            "time_start": "float or null: with --each, epoch seconds when the task started (active)",
            "eta": "str: with --each, scheduled items: ISO 8601 as the worker sent it (not epoch seconds)",
            "args, kwargs": "list, object: with --each, the task's arguments (task items)",
            "worker_pid": "int or null: with --each, the pool process running it (active)",
            "acknowledged": "bool: with --each, whether the message was acknowledged",
            "delivery_info": "object: with --each, exchange, routing_key, priority, redelivered",
            "priority": "int: with --each, scheduled items: the timer entry's priority",
            "item": "any: with --each, an item of a list reply that is neither a task nor a name",
            "received": "float: epoch seconds when cctl received the reply",
        },
    },
    "queue": {
        "layout": "first record",
        "columns": {"timestamp": 12, "queue": 32, "messages": 9, "ready": 9, "unacked": 9, "consumers": 9,
                    "memory": 10, "purged": 9, "unacked_purged": 14, "moved": 9, "dry_run": 7, "source": 10,
                    "broker": 40},
        "details": ("by_priority", "stats_age"),
        "produced_by": "cq-ls, cq-len, cq-purge, cq-move", "consumed_by": "cq-len - (queue), jq",
        "summary": "One queue: its name and, depending on the command, its counts.",
        "fields": {
            "type": "\"queue\"",
            "queue": "str: queue name",
            "broker": "str: redacted broker URL (cq-ls)",
            "messages": "int: messages in the queue (cq-len; Redis: the sum of its priority lists, "
                        "unacked not included; RabbitMQ: ready + unacked, when unacked is known)",
            "ready": "int: messages waiting to be delivered (cq-len; on RabbitMQ live, from a passive queue_declare)",
            "unacked": "int or null: delivered, not yet acknowledged; null when unknown (cq-len)",
            "consumers": "int or null: consumers (cq-len; RabbitMQ only, live from a passive queue_declare)",
            "memory": "int or null: bytes the broker uses for the queue (cq-len; RabbitMQ management API only)",
            "by_priority": "object or null: messages per priority list, keyed by step as a string, "
                           "e.g. {\"0\": 5, \"3\": 0, \"6\": 1, \"9\": 0} (cq-len; Redis only)",
            "source": "str: where the counts come from: redis; amqp+management (RabbitMQ: ready and consumers "
                      "from a passive queue_declare, unacked and memory from the management API); or amqp "
                      "(queue_declare only: the API unreachable, or no statistics yet) (cq-len)",
            "stats_age": "float or null: seconds since the management API sampled unacked and memory, by its own "
                         "timestamps; null when they are not from it (cq-len, RabbitMQ)",
            "timestamp": "float: epoch seconds of the batch (cq-len --watch)",
            "purged": "int: messages removed, or that would be with --dry-run (cq-purge)",
            "unacked_purged": "int: unacked-hash entries removed (cq-purge --unacked, Redis)",
            "moved": "int: messages moved from this source queue, or that would be with --dry-run (cq-move)",
            "dry_run": "true: nothing was removed or moved (cq-purge, cq-move --dry-run)",
        },
    },
    "message": {
        "layout": "first record",
        "columns": {"uuid": 36, "task": 32, "priority": 8, "retries": 7, "eta": 25, "size": 8},
        "details": ("args", "kwargs", "body", "error", "moved_to", "dry_run"),
        "produced_by": "cq-peek, cq-move, cq-purge --task/--id/-",
        "consumed_by": "cctl revoke/terminate/query_task - (uuid), cq-move - and cq-purge - (uuid), jq",
        "summary": "One queued task message, decoded (pickle is never unpickled): waiting (cq-peek), moved "
                   "(cq-move) or removed (cq-purge with a filter).",
        "fields": {
            "type": "\"message\"",
            "queue": "str",
            "uuid": "str: task id",
            "id": "str: the same as uuid (the task message's own name for it)",
            "task": "str: task name",
            "args": "list or null: null when the body is not decoded",
            "kwargs": "object or null",
            "eta": "str or null: ISO 8601, as the message carries it (not epoch seconds)",
            "expires": "str or null: ISO 8601, as the message carries it (not epoch seconds)",
            "retries": "int",
            "priority": "int or null: the message's priority property",
            "root_id": "str or null", "parent_id": "str or null",
            "origin": "str or null: pid@host of the sender",
            "headers": "object: the message headers as sent (kept as sent when not an object; error says so)",
            "size": "int: bytes of the body",
            "body": "str: only for bodies not decoded, e.g. \"<pickle, 120 bytes>\"",
            "error": "str: only when part of the message could not be decoded (headers or a field of the wrong "
                     "type, which is then null; a body that is not valid base64 or JSON): what is wrong",
            "moved_to": "str: the queue it was moved to (cq-move); queue is where it came from",
            "dry_run": "true: nothing was moved or removed (cq-move, cq-purge --dry-run)",
        },
    },
    "snapshot": {
        "layout": "fixed",
        "columns": {"timestamp": 12, "event_count": 11, "gaps": 5, "errors": 6, "ignored": 7},
        "details": ("workers", "tasks"),
        "produced_by": "cev-cam", "consumed_by": "jq, dashboards",
        "summary": "The cluster State at one moment: workers, and counts over the tasks in cev-cam's table "
                   "(at most --max-tasks; only those since the last snapshot with --clear-after).",
        "fields": {
            "type": "\"snapshot\"",
            "timestamp": "float: epoch seconds, the stream's clock (last local_received + time since it was "
                         "read), so a replayed file is judged as of its end; it never goes backwards",
            "event_count": "int: task and worker events applied since the start",
            "gaps": "int: celops-gap records seen", "errors": "int: error records seen",
            "ignored": "int: records that are not events (no or unknown type)",
            "invalid": "int: events rejected, never applied, for a field State uses of the wrong type or out of "
                       "range (each reported: FILE:LINE on stderr and exit 65 from input, a warning from the "
                       "broker)",
            "workers": "list of {hostname, alive (by heartbeat: now < last_heartbeat + 2 * freq), active, "
                       "processed, loadavg, freq (s), last_heartbeat (float), sw_ver}",
            "tasks": "object: count, by_state {STATE: n}, by_name {name: {STATE: n}}, "
                     "by_worker {hostname: {STATE: n}}, runtime {name: {count, p50, p95, max}} (seconds)",
            "wait": "object: {name: {count, p50, p95, max}}, seconds from task-received to task-started",
        },
    },
    "task": {
        "layout": "fixed",
        "columns": {"timestamp": 12, "state": 9, "hostname": 24, "name": 28, "uuid": 36},
        "details": ("runtime", "wait", "retries", "exception"),
        "produced_by": "cev-cam --tasks, cev-top (w)", "consumed_by": "cctl revoke/terminate/query_task - (uuid), jq",
        "summary": "One task's merged state as of a snapshot (written when it changed since the last one). "
                   "Fields come as their events are seen: a task only sent has no hostname or timestamp yet.",
        "fields": {
            "type": "\"task\"", "uuid": "str: task id", "name": "str: task name",
            "state": "str: PENDING, RECEIVED, STARTED, SUCCESS, FAILURE, RETRY, REVOKED, REJECTED",
            "hostname": "str: the worker",
            "timestamp": "float: epoch seconds of the event that set the state",
            "clock": "int: that event's Lamport clock",
            "sent, received, started, succeeded, failed, retried, revoked, rejected":
                "float: epoch seconds of each event seen",
            "runtime": "float: seconds (task-succeeded)", "wait": "float: seconds, received -> started",
            "retries": "int", "exception": "str (task-failed)",
        },
    },
    "result": {
        "layout": "fixed",
        "columns": {"uuid": 36, "state": 9, "name": 28, "date_done": 25, "worker": 24},
        "details": ("result", "args", "kwargs", "retries", "queue", "known", "forgotten", "dry_run", "traceback"),
        "produced_by": "cres, csend --wait", "consumed_by": "csend - (name, args, kwargs, queue), "
                                                          "cctl revoke/query_task - (uuid), jq",
        "summary": "One task's result as the result backend stores it. name, args, kwargs, worker, retries and "
                   "queue are stored only with result_extended = True: present when the backend has them, "
                   "absent otherwise. Values not decoded are shown like cq-peek bodies (\"<pickle, N bytes>\").",
        "fields": {
            "type": "\"result\"", "uuid": "str: task id",
            "state": "str: PENDING, STARTED, RETRY, SUCCESS, FAILURE, REVOKED...; null when the stored result "
                     "is not decoded (pickle without --unsafe-pickle)",
            "result": "any: the return value; for FAILURE, RETRY and REVOKED the exception as celery stores it, "
                      "{exc_type, exc_message, exc_module} (never rebuilt: no task code is imported)",
            "traceback": "str or null",
            "date_done": "str or null: ISO 8601 with its UTC offset, as the worker stored it (not epoch seconds)",
            "children": "list: the child results as celery stores them",
            "name": "str: task name (result_extended)",
            "args, kwargs": "list, object: the arguments the task ran with (result_extended)",
            "worker": "str: the worker's hostname (result_extended)",
            "retries": "int: retries before this result (result_extended)",
            "queue": "str: the routing key it was delivered with, usually the queue (result_extended)",
            "known": "false: the backend has no result for this id (state is then PENDING, as celery says)",
            "forgotten": "true: deleted from the backend (cres --forget), or would be with --dry-run",
            "dry_run": "true: nothing was deleted (cres --forget --dry-run)",
        },
    },
    "count": {
        "layout": "first record", "columns": {"state": 9, "name": 40, "count": 9}, "details": (),
        "produced_by": "cres --count", "consumed_by": "jq",
        "summary": "How many stored results are in one state (and, with --by-name, of one task name); "
                   "the most frequent first.",
        "fields": {"type": "\"count\"", "state": "str or null: null for results not decoded",
                   "name": "str or null: task name (--by-name; null without result_extended)",
                   "count": "int"},
    },
    "sent": {
        "layout": "fixed", "columns": {"uuid": 36, "name": 32, "queue": 24}, "details": ("args", "kwargs", "dry_run"),
        "produced_by": "csend", "consumed_by": "cres - (uuid), cctl revoke - (uuid), jq",
        "summary": "One task message csend published (or, with --dry-run, would publish).",
        "fields": {
            "type": "\"sent\"", "uuid": "str: the new task id; null with --dry-run",
            "name": "str: task name", "queue": "str: the queue celery's router sent it to",
            "args, kwargs": "list, object: the arguments sent",
            "dry_run": "true: nothing was sent (--dry-run)",
        },
    },
    "finding": {
        "layout": "fixed", "columns": {"severity": 8, "check": 22, "subject": 32, "message": 72},
        "details": ("value", "threshold", "hint"),
        "produced_by": "ccheck", "consumed_by": "jq, cron, monitoring",
        "summary": "One problem a ccheck check found (with -v, also one ok finding per check that found none).",
        "fields": {
            "type": "\"finding\"",
            "check": "str: the check's id, AREA.NAME (ccheck --list; man ccheck, CHECKS); without -v, an AREA alone "
                     "for its checks that could not run for one reason",
            "severity": "str: ok, info (worth knowing, not wrong), warn, crit, or unknown (the check could not "
                        "run: the message says why)",
            "subject": "str: what the finding is about: a queue, a worker, a task name, \"broker\", "
                       "\"workers\"; \"-\" for the check as a whole",
            "message": "str: what was seen, in plain words (secrets redacted)",
            "value": "number, str, list or null: the measured value the threshold is compared with",
            "threshold": "number or null: the threshold it was compared with (the option's value)",
            "hint": "str or null: what to do, naming the celops command that does it where there is one "
                    "(null for ok and unknown findings)",
        },
    },
    "check": {
        "layout": "fixed", "columns": {"check": 22, "applies_to": 10, "option": 28, "summary": 72},
        "details": ("severity", "source", "hint"),
        "produced_by": "ccheck --list", "consumed_by": "ccheck --check/--skip (check), jq",
        "summary": "One check ccheck can run: what it looks for and how it judges.",
        "fields": {
            "type": "\"check\"", "check": "str: its id, AREA.NAME",
            "summary": "str: what it looks for", "severity": "str: when it gives which severity",
            "option": "str or null: the options holding its thresholds",
            "applies_to": "str or null: \"redis\" when the check applies to Redis brokers only",
            "source": "str: the celery document, or known failure (seed), it comes from",
            "hint": "str: what its findings advise",
        },
    },
    "error": {
        "layout": "fixed", "columns": EVENT_COLUMNS, "details": ("error", "size", "queue", "key", "channel"),
        "produced_by": "cev-dump, cq-peek, cq-len, cq-purge, cq-move",
        "consumed_by": "cev-cam (counted as errors), jq",
        "summary": "Something in the stream could not be decoded, or is an object without a string `type`, or a "
                   "queue could not be read (a key of the wrong type); the stream and the other queues go on "
                   "(cq-len, cq-purge and cq-peek then exit 65).",
        "fields": {"type": "\"error\"", "error": "str: what went wrong", "size": "int: raw bytes",
                   "queue": "str: the queue it was in (cq-peek), or the queue that could not be read "
                            "(cq-len, cq-purge, cq-peek)",
                   "key": "str: the Redis key that is not a queue list (cq-len, cq-purge, cq-peek)",
                   "local_received": "float: epoch seconds (cev-dump)",
                   "channel": "str: the Redis channel it came on (cev-dump on Redis)"},
    },
}


# What each command writes: command -> {record type: the fields it writes, or ALL_FIELDS}. Each command's man
# RECORDS section is generated from this and RECORDS (scripts/gen_docs.py); a new command adds itself here.
ALL_FIELDS = None
COMMAND_RECORDS = {
    "cev-dump": {"event": ALL_FIELDS, "celops-gap": ALL_FIELDS,
                 "error": ("type", "error", "size", "local_received", "channel")},
    "cev-cam": {"snapshot": ALL_FIELDS, "task": ALL_FIELDS},
    "cq-ls": {"queue": ("type", "queue", "broker")},
    "cq-len": {"queue": ("type", "queue", "messages", "ready", "unacked", "consumers", "memory", "by_priority",
                         "source", "stats_age", "timestamp"),
               "error": ("type", "error", "queue", "key")},
    "cq-peek": {"message": ALL_FIELDS, "error": ("type", "error", "size", "queue", "key")},
    "cq-purge": {"queue": ("type", "queue", "purged", "unacked_purged", "dry_run"), "message": ALL_FIELDS,
                 "error": ("type", "error", "queue", "key")},
    "cq-move": {"message": ALL_FIELDS, "queue": ("type", "queue", "moved", "dry_run"),
                "error": ("type", "error", "queue", "key")},
    "cctl": {"reply": ALL_FIELDS},
    "cres": {"result": ALL_FIELDS, "count": ALL_FIELDS},
    "csend": {"sent": ALL_FIELDS, "result": ALL_FIELDS},
    "ccheck": {"finding": ALL_FIELDS, "check": ALL_FIELDS},
    "cev-top": {"task": ALL_FIELDS},  # to the file its w key names; the screen is its output
}


def fields_written(command, kind):
    """``(names, meaning)`` pairs of RECORDS[kind]'s fields that ``command`` writes, in the vocabulary's order."""
    chosen = COMMAND_RECORDS[command][kind]
    entries = RECORDS[kind]["fields"].items()
    if chosen is ALL_FIELDS:
        return list(entries)
    unknown = set(chosen) - {name for names, _ in entries for name in names.split(", ")}
    if unknown:
        raise KeyError(f"COMMAND_RECORDS[{command!r}][{kind!r}]: {sorted(unknown)} not in RECORDS[{kind!r}]")
    return [(names, meaning) for names, meaning in entries if set(names.split(", ")) & set(chosen)]


# Constructors of the records that several modules build alike (the others are built where they are written,
# with the fields RECORDS gives them: the drift tests compare what each command writes with RECORDS).

GAP, ERROR = "celops-gap", "error"


def gap(reason, since, until, dropped=None, switched=None):
    """A celops-gap record; ``switched`` is ``(from, to)`` (redacted URLs) when the stream resumed elsewhere."""
    record = {"type": GAP, "reason": reason, "since": since, "until": until, "dropped": dropped}
    if switched and switched[0] != switched[1]:
        record["from"], record["to"] = switched
    return record


def error(message, **fields):
    """An error record: ``message`` says what went wrong; ``fields`` from its vocabulary (size, queue, key...)."""
    return {"type": ERROR, "error": message, **fields}
