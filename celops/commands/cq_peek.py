"""Show the messages waiting in a queue without consuming them, one message record each.

Task messages of celery's protocol v2 (task and id in the headers, the body
[args, kwargs, embed]) and v1 (the body a dict) are decoded from JSON,
base64 and zlib/bzip2 compression. Pickled bodies are never unpickled:
the record says "body": "<pickle, N bytes>" and args/kwargs are null. A
message that cannot be decoded becomes an error record with its raw size,
and the rest still print (exit 0).

On Redis the messages come from LRANGE over the queue's priority lists,
in the order workers would receive them (priority list 0 first, oldest
first within a list). On RabbitMQ they come from the management API's
"get messages" with ackmode reject_requeue_true (see CAVEATS).
"""

import base64
import bz2
import zlib

from celops.core import cli
from celops.core.queues import add_queue_argument
from celops.core.rabbit import add_management_option

CHUNK = 1000  # messages per LRANGE: bounded memory, streaming output

_DECOMPRESS = {"application/x-gzip": zlib.decompress, "gzip": zlib.decompress, "zlib": zlib.decompress,
               "application/x-bz2": bz2.decompress, "bzip2": bz2.decompress}
_NOT_DECODED = {"application/x-python-serialize": "pickle", "application/x-msgpack": "msgpack",
                "application/x-yaml": "yaml"}


def build_parser():
    parser = cli.command_parser("cq-peek", __doc__, timeout=5.0)
    add_queue_argument(parser, dest="queue", nargs=None, help="the queue to look into")
    parser.add_argument("-n", "--limit", type=cli.whole_number(0), default=100, metavar="N",
                        help="show at most N messages (default 100; 0 means all)")
    parser.add_argument("--offset", type=cli.whole_number(0), default=0, metavar="N",
                        help="skip the first N messages, in delivery order")
    add_management_option(parser)
    parser.man_sections += [
        ("RECORDS",
         '{"type":"message","queue":Q,"uuid":ID,"id":ID,"task":NAME,"args":[...],"kwargs":{...},\n'
         '   "eta":ISO|null,"expires":ISO|null,"retries":N,"priority":N|null,"root_id":ID,\n'
         '   "parent_id":ID|null,"origin":"pid@host","headers":{...},"size":BYTES}\n\n'
         'plus "body": "<pickle, N bytes>" for bodies it does not decode and "error" for bodies it cannot; '
         '{"type":"error","queue":Q,"error":WHY,"size":BYTES} for a message that is not a kombu message at all. '
         "eta and expires are kept as the message carries them (ISO 8601 strings); size is the body's bytes."),
        ("CAVEATS",
         "RabbitMQ has no way to look without taking: the management API gets the first N messages and "
         "rejects them with requeue, so they go back to the queue, marked redelivered, and may come back "
         "in a different order behind messages that arrived meanwhile; a consumer may also receive one while "
         "it is out. Peek a busy RabbitMQ queue only when that reordering is acceptable. --offset on RabbitMQ "
         "still fetches (and requeues) the skipped messages.\n\n"
         "On Redis the view is exact but not atomic: messages consumed or published while cq-peek reads "
         "may be missed or shown twice across a large peek."),
        ("EXAMPLES",
         "  cq-peek celery -n 5\n"
         "  cq-peek celery -n 0 | jq -r 'select(.task == \"app.tasks.resize\") | .uuid' | cctl revoke -\n"
         "  cq-peek video --offset 100 -n 10 | jq -c '[.uuid, .args]'"),
    ]
    return parser


def run(ctx):
    args = ctx.args
    broker = ctx.broker
    peek = _redis_messages if broker.transport == "redis" else _rabbit_messages
    for record in peek(ctx, broker, args.queue, args.offset, args.limit or None):
        ctx.out.write(record)
    return 0


# Redis ---------------------------------------------------------------------------

def _redis_messages(ctx, broker, queue, offset, limit):
    """Walk the priority lists in delivery order: step 0 first; within a list, the right end (oldest) first."""
    from celops.core.queues import checked_length, redis_client

    client = redis_client(broker, ctx.args.timeout)
    keys = [key for _, key in broker.priority_keys(queue)]
    remaining = limit
    for key, length in zip(keys, client.pipeline(("LLEN", key) for key in keys)):
        length = checked_length(key, length)
        if offset >= length:
            offset -= length
            continue
        end = length if remaining is None else min(length, offset + remaining)
        for start in range(offset, end, CHUNK):
            stop = min(start + CHUNK, end)
            # delivery position p is list index -(p + 1)
            for raw in reversed(client.call("LRANGE", key, -stop, -start - 1)):
                yield redis_message(queue, raw)
        if remaining is not None:
            remaining -= end - offset
            if remaining <= 0:
                return
        offset = 0


def redis_message(queue, raw):
    """Decode one element of a Redis queue list: kombu's JSON envelope around the body."""
    import orjson

    try:
        envelope = orjson.loads(raw)
        properties = envelope.get("properties") or {}
        body = envelope.get("body") or ""
        body = base64.b64decode(body) if properties.get("body_encoding") == "base64" else body.encode()
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError) as exc:
        return {"type": "error", "queue": queue, "error": f"not a kombu message: {exc}", "size": len(raw)}
    return task_message(queue, envelope.get("headers") or {}, properties.get("priority"),
                        envelope.get("content-type"), body)


# RabbitMQ ------------------------------------------------------------------------

def _rabbit_messages(ctx, broker, queue, offset, limit):
    from celops.core.exits import UsageError
    from celops.core.rabbit import Management

    if limit is None:
        raise UsageError("RabbitMQ messages are taken and requeued to be seen: give a --limit above 0")
    broker.kombu(ctx.args.timeout).release()  # the broker itself first: its errors name the broker URL
    api = Management(broker, ctx.args.management_url, ctx.args.timeout)
    for message in api.get_messages(queue, offset + limit)[offset:]:
        properties = message.get("properties") or {}
        if message.get("payload_encoding") == "base64":
            body = base64.b64decode(message.get("payload") or "")
        else:
            body = (message.get("payload") or "").encode()
        yield task_message(queue, properties.get("headers") or {}, properties.get("priority"),
                           properties.get("content_type"), body)


# Both ----------------------------------------------------------------------------

def task_message(queue, headers, priority, content_type, body):
    """A message record from a task message's headers and body bytes (protocol v2 or v1)."""
    import orjson

    record = {"type": "message", "queue": queue, "uuid": headers.get("id"), "id": headers.get("id"),
              "task": headers.get("task"), "args": None, "kwargs": None,
              "eta": headers.get("eta"), "expires": headers.get("expires"), "retries": headers.get("retries"),
              "priority": priority, "root_id": headers.get("root_id"), "parent_id": headers.get("parent_id"),
              "origin": headers.get("origin"), "headers": headers, "size": len(body)}
    compression = headers.get("compression")
    try:
        if compression:
            if compression not in _DECOMPRESS:
                record["body"] = f"<{compression} compressed, {len(body)} bytes>"
                return record
            body = _DECOMPRESS[compression](body)
        if content_type != "application/json":
            kind = _NOT_DECODED.get(content_type, content_type or "unknown content type")
            record["body"] = f"<{kind}, {len(body)} bytes>"
            return record
        payload = orjson.loads(body)
    except (orjson.JSONDecodeError, zlib.error, OSError, ValueError) as exc:
        record["error"] = f"undecodable body: {exc}"
        return record
    if isinstance(payload, list) and len(payload) == 3:  # protocol v2: [args, kwargs, embed]
        record["args"], record["kwargs"] = payload[0], payload[1]
    elif isinstance(payload, dict) and "task" in payload:  # protocol v1: everything in the body
        for field in ("task", "args", "kwargs", "eta", "expires", "retries"):
            record[field] = payload.get(field)
        record["uuid"] = record["id"] = payload.get("id")
    else:
        record["error"] = "not a celery task message (neither protocol v1 nor v2)"
    return record


def main(argv=None, io=None):
    return cli.execute(build_parser, run, argv, io)
