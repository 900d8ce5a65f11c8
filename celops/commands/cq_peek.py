"""Show the messages waiting in a queue without consuming them, one message record each.

Task messages of celery's protocol v2 (task and id in the headers, the body
[args, kwargs, embed]) and v1 (the body a dict) are decoded from JSON,
base64 and zlib/bzip2 compression. Pickled bodies are never unpickled:
the record says "body": "<pickle, N bytes>" and args/kwargs are null. A
message that cannot be decoded (headers that are not an object, a field of
the wrong type, a body that is not valid base64 or JSON) is still a message
record, with what could be read and "error" saying what is wrong; one that
is not a kombu message at all is an error record. The rest still print
(exit 0). A Redis key of the queue that is not a list is an error record
naming the key, the other lists are still read, and the exit status is 65.

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
from celops.core.resp import ReplyError

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
         'plus "body": "<pickle, N bytes>" for bodies it does not decode and "error" saying what could not be '
         'decoded (the fields that could be read are kept; a field of the wrong type is null); '
         '{"type":"error","queue":Q,"error":WHY,"size":BYTES} for a message that is not a kombu message at all; '
         '{"type":"error","queue":Q,"key":KEY,"error":WHY} for a Redis key of the queue that is not a list. '
         "eta and expires are kept as the message carries them (ISO 8601 strings); size is the body's bytes. "
         'On RabbitMQ an empty header value, which the management API shows as "undefined", is null.'),
        ("CAVEATS",
         "RabbitMQ has no way to look without taking: the management API gets the first N messages and "
         "rejects them with requeue, so they go back to the queue, marked redelivered, and may come back "
         "in a different order behind messages that arrived meanwhile; a consumer may also receive one while "
         "it is out. Peek a busy RabbitMQ queue only when that reordering is acceptable. --offset on RabbitMQ "
         "still fetches (and requeues) the skipped messages; -n 0 there means every message ready when cq-peek "
         "starts (a passive queue_declare counts them), all taken and requeued at once.\n\n"
         "On Redis the view is exact but not atomic: messages consumed or published while cq-peek reads "
         "may be missed or shown twice across a large peek."),
        ("EXAMPLES",
         "  cq-peek celery -n 5\n"
         "  cq-peek celery -n 0 | jq -r 'select(.task == \"app.tasks.resize\") | .uuid' | cctl revoke -\n"
         "  cq-peek video --offset 100 -n 10 | jq -c '[.uuid, .args]'"),
    ]
    return parser


def run(ctx):
    """Records as they decode; an unknown queue or a key that is not a list goes to QueueReport instead."""
    from celops.core.queues import BadKey, QueueReport, UnknownQueue

    args = ctx.args
    broker = ctx.broker
    peek = _redis_messages if broker.transport == "redis" else _rabbit_messages
    report = QueueReport(ctx)
    try:
        for record in peek(ctx, broker, args.queue, args.offset, args.limit or None):
            if isinstance(record, BadKey):  # reported; the other priority lists are still read
                report.add(record)
            else:
                ctx.out.write(record)
    except UnknownQueue as unknown:
        report.add(unknown)
    return report.status()


# Redis ---------------------------------------------------------------------------

def _redis_messages(ctx, broker, queue, offset, limit):
    """Walk the priority lists in delivery order: step 0 first; within a list, the right end (oldest) first.

    A key of another type than a list gives a BadKey naming it, and the walk goes on; a queue with no
    list and no binding raises UnknownQueue.
    """
    from celops.core.queues import known_only, length_or_problem, redis_client

    client = redis_client(broker, ctx.args.timeout, ctx.warn)
    keys = [key for _, key in broker.priority_keys(queue)]
    lengths = [length_or_problem(client, queue, key, reply)
               for key, reply in zip(keys, client.pipeline(("LLEN", key) for key in keys))]
    if not any(isinstance(length, int) and length for length in lengths):
        (known,) = known_only(broker, client, [{"queue": queue}], lambda record: 0)
        if not isinstance(known, dict):
            raise known
    remaining = limit
    for key, length in zip(keys, lengths):
        if not isinstance(length, int):
            yield length
            continue
        if offset >= length:
            offset -= length
            continue
        end = length if remaining is None else min(length, offset + remaining)
        for start in range(offset, end, CHUNK):
            stop = min(start + CHUNK, end)
            # delivery position p is list index -(p + 1)
            (chunk,) = client.pipeline([("LRANGE", key, -stop, -start - 1)])
            if isinstance(chunk, ReplyError):  # the key changed type while we read it
                yield length_or_problem(client, queue, key, chunk)
                break
            for raw in reversed(chunk):
                yield redis_message(queue, raw)
        if remaining is not None:
            remaining -= end - offset
            if remaining <= 0:
                return
        offset = 0


def redis_message(queue, raw):
    """Decode one element of a Redis queue list: kombu's JSON envelope around the body. Never raises."""
    import orjson

    try:
        envelope = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return _not_a_message(queue, f"not JSON: {exc}", len(raw))
    properties = envelope.get("properties") if isinstance(envelope, dict) else None
    if not isinstance(properties, (dict, type(None))) or not isinstance(envelope, dict):
        return _not_a_message(queue, "not a kombu envelope (an object with headers, properties and body)", len(raw))
    properties = properties or {}
    return task_message(queue, envelope.get("headers"), properties.get("priority"), envelope.get("content-type"),
                        envelope.get("body"), properties.get("body_encoding"))


def _not_a_message(queue, why, size):
    return {"type": "error", "queue": queue, "error": f"not a kombu message: {why}", "size": size}


# RabbitMQ ------------------------------------------------------------------------

def _rabbit_messages(ctx, broker, queue, offset, limit):
    """The first ``offset + limit`` messages (limit None: as many as the queue holds ready now), requeued."""
    from celops.core.queues import declare_passive
    from celops.core.rabbit import Management

    connection = broker.kombu(ctx.args.timeout)  # the broker itself first: its errors name the broker URL
    try:
        ready, _ = declare_passive(connection, queue)  # raises UnknownQueue for a queue RabbitMQ does not know
    finally:
        connection.release()
    if limit is None:
        limit = ready
    if limit <= 0:
        return
    api = Management(broker, ctx.args.management_url, ctx.args.timeout)
    for message in api.get_messages(queue, offset + limit)[offset:]:
        yield rabbit_message(queue, message)


def rabbit_message(queue, message):
    """Decode one message of the management API's "get messages". Never raises.

    The API renders an AMQP void (a None header) as the string "undefined";
    the record says null, as the vocabulary does.
    """
    properties = _without_undefined(message.get("properties")) if isinstance(message, dict) else None
    if not isinstance(properties, (dict, type(None))) or not isinstance(message, dict):
        return _not_a_message(queue, "the management API returned something that is not a message", 0)
    properties = properties or {}
    encoding = message.get("payload_encoding")
    return task_message(queue, properties.get("headers"), properties.get("priority"),
                        properties.get("content_type"), message.get("payload"),
                        None if encoding == "string" else encoding)


def _without_undefined(value):
    """``value`` with every "undefined" (how the management API shows an AMQP void) replaced by None."""
    if value == "undefined":
        return None
    if isinstance(value, dict):
        return {key: _without_undefined(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_undefined(item) for item in value]
    return value


# Both ----------------------------------------------------------------------------

_JSON_KIND = {str: "a string", int: "a number", float: "a number", bool: "a boolean", list: "a list",
              dict: "an object", type(None): "null"}
_TEXT_FIELDS = ("task", "eta", "expires", "root_id", "parent_id", "origin")


def _kind(value):
    return _JSON_KIND.get(type(value), type(value).__name__)


def _typed(source, name, expected, problems, where="header"):
    """``source[name]`` if it is of the ``expected`` type (or absent/null); otherwise None, and a problem named."""
    value = source.get(name)
    if value is None or (isinstance(value, expected) and not (expected is int and isinstance(value, bool))):
        return value
    problems.append(f"{where} {name!r} is {_kind(value)}, not {_JSON_KIND[expected]}")
    return None


def _body_bytes(body, encoding):
    """The body's bytes from the envelope's text; raises ValueError saying what is wrong with it."""
    import binascii

    if body is None:
        return b""
    if not isinstance(body, str):
        raise ValueError(f"the body is {_kind(body)}, not a string")
    if encoding is None or encoding == "utf-8":
        return body.encode("utf-8", "surrogatepass")
    if encoding != "base64":
        raise ValueError(f"unknown body encoding {encoding!r}")
    try:
        return base64.b64decode(body, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"the body is not valid base64: {exc}") from None


def task_message(queue, headers, priority, content_type, body, body_encoding=None):
    """A message record from a task message's headers and (encoded) body, protocol v2 or v1. Never raises.

    Whatever cannot be decoded is named in ``error``; the fields that could be read are kept.
    """
    problems = []
    if headers is None:
        headers = {}
    fields = headers if isinstance(headers, dict) else {}
    if not isinstance(headers, dict):
        problems.append(f"the headers are {_kind(headers)}, not an object")
    task_id = _typed(fields, "id", str, problems)
    record = {"type": "message", "queue": queue, "uuid": task_id, "id": task_id, "task": None,
              "args": None, "kwargs": None, "eta": None, "expires": None,
              "retries": _typed(fields, "retries", int, problems), "priority": None, "root_id": None,
              "parent_id": None, "origin": None, "headers": headers, "size": 0}
    record.update((name, _typed(fields, name, str, problems)) for name in _TEXT_FIELDS)
    record["priority"] = _typed({"priority": priority}, "priority", int, problems, "property")
    try:
        raw = _body_bytes(body, body_encoding)
    except ValueError as exc:
        raw = None
        problems.append(str(exc))
        record["size"] = len(body.encode("utf-8", "surrogatepass")) if isinstance(body, str) else 0
    if raw is not None:
        record["size"] = len(raw)
        _decode_body(record, raw, _typed(fields, "compression", str, problems),
                     _typed({"content-type": content_type}, "content-type", str, problems, "property"), problems)
    if problems:
        record["error"] = "; ".join(problems)
    return record


def _decode_body(record, body, compression, content_type, problems):
    """Fill ``args``/``kwargs`` (v2) or every field (v1) from the body bytes, or say why not."""
    import orjson

    try:
        if compression:
            if compression not in _DECOMPRESS:
                record["body"] = f"<{compression} compressed, {len(body)} bytes>"
                return
            body = _DECOMPRESS[compression](body)
        if content_type != "application/json":
            kind = _NOT_DECODED.get(content_type, content_type or "unknown content type")
            record["body"] = f"<{kind}, {len(body)} bytes>"
            return
        payload = orjson.loads(body)
    except (ValueError, OSError, EOFError, zlib.error) as exc:  # JSONDecodeError is a ValueError
        problems.append(f"undecodable body: {exc}")
        return
    if isinstance(payload, list) and len(payload) == 3:  # protocol v2: [args, kwargs, embed]
        record["args"] = _typed({"args": payload[0]}, "args", list, problems, "body's")
        record["kwargs"] = _typed({"kwargs": payload[1]}, "kwargs", dict, problems, "body's")
    elif isinstance(payload, dict) and "task" in payload:  # protocol v1: everything in the body
        task_id = _typed(payload, "id", str, problems, "body's")
        record["uuid"] = record["id"] = task_id
        record["args"] = _typed(payload, "args", list, problems, "body's")
        record["kwargs"] = _typed(payload, "kwargs", dict, problems, "body's")
        record["retries"] = _typed(payload, "retries", int, problems, "body's")
        for name in ("task", "eta", "expires"):
            record[name] = _typed(payload, name, str, problems, "body's")
    else:
        problems.append("not a celery task message (neither protocol v1 nor v2)")


def main(argv=None, io=None):
    return cli.execute(build_parser, run, argv, io)
