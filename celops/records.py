"""The record vocabulary every command shares, declared once.

README.md's vocabulary table and ``man 7 celops`` are generated from this.
Times are epoch seconds as floats everywhere; a task id is ``uuid`` and a
worker is ``hostname`` in every record that carries one.
"""

RECORDS = {
    "event": {
        "produced_by": "cev-dump", "consumed_by": "cev-cam",
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
            "...": "all other fields as sent: args, kwargs, result, runtime, exception, traceback, "
                   "freq, active, processed, loadavg, sw_ident, sw_ver, sw_sys",
        },
    },
    "celops-gap": {
        "produced_by": "cev-dump", "consumed_by": "cev-cam",
        "summary": "Events were (or may have been) lost: a broker disconnect, restart or backlog overflow.",
        "fields": {
            "type": "\"celops-gap\"",
            "reason": "str: why, e.g. connection closed by the broker; backlog full (--buffer) first",
            "since": "float: epoch seconds, last moment known good (when the loss was seen, or the "
                     "backlog filled up)",
            "until": "float: epoch seconds, when the stream resumed (resubscribed)",
            "dropped": "int or null: events known dropped, null when unknown (cev-dump cannot count them today)",
        },
    },
    "reply": {
        "produced_by": "cctl", "consumed_by": "cctl (ids with -)",
        "summary": "One worker's reply to a broadcast, secrets redacted.",
        "fields": {
            "type": "\"reply\"",
            "command": "str: the broadcast command",
            "hostname": "str: the worker that replied",
            "worker": "str: the same as hostname (the name `celery inspect` users expect)",
            "reply": "any: the worker's answer",
            "received": "float: epoch seconds",
        },
    },
    "queue": {
        "produced_by": "cq-ls, cq-len, cq-purge", "consumed_by": "cq-len (-), cq-purge (-)",
        "summary": "One queue: its name and, depending on the command, its counts.",
        "fields": {
            "type": "\"queue\"",
            "queue": "str: queue name",
            "broker": "str: redacted broker URL (cq-ls)",
            "messages": "int: ready + unacked (cq-len)",
            "purged": "int: messages removed (cq-purge)",
        },
    },
    "message": {
        "produced_by": "cq-peek", "consumed_by": "cctl revoke - (uuid)",
        "summary": "One queued task message, decoded without being consumed.",
        "fields": {
            "type": "\"message\"",
            "queue": "str",
            "uuid": "str: task id",
            "id": "str: the same as uuid (the task message's own name for it)",
            "task": "str: task name",
            "args": "list", "kwargs": "object",
            "size": "int: bytes",
        },
    },
    "snapshot": {
        "produced_by": "cev-cam", "consumed_by": "jq, dashboards",
        "summary": "The cluster State at one moment.",
        "fields": {"type": "\"snapshot\"", "timestamp": "float: epoch seconds",
                   "workers": "list of worker objects", "tasks": "object of counts"},
    },
    "task": {
        "produced_by": "cev-cam --tasks", "consumed_by": "cctl revoke - (uuid)",
        "summary": "One task's merged state, as of a snapshot.",
        "fields": {"type": "\"task\"", "uuid": "str: task id", "name": "str", "state": "str",
                   "hostname": "str: worker"},
    },
    "error": {
        "produced_by": "cev-dump, cq-peek", "consumed_by": "jq",
        "summary": "Something in the stream could not be decoded; the stream goes on.",
        "fields": {"type": "\"error\"", "error": "str: what went wrong", "size": "int: raw bytes",
                   "local_received": "float: epoch seconds (cev-dump)",
                   "channel": "str: the Redis channel it came on (cev-dump on Redis)"},
    },
}


def describe(kind):
    """One record type as plain text lines, for man pages and the README."""
    spec = RECORDS[kind]
    yield f"{kind}: {spec['summary']} Produced by {spec['produced_by']}; consumed by {spec['consumed_by']}."
    for field, meaning in spec["fields"].items():
        yield f"  {field}: {meaning}"
