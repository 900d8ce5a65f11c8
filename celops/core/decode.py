"""Task messages as celery and kombu write them, decoded into message records (cq-peek, and whoever reads queues).

Never raises: whatever cannot be decoded is named in the record's ``error``.
Pickled bodies are never unpickled.
"""

import base64
import binascii
import bz2
import zlib

import orjson

MAX_BODY_BYTES = 64 << 20  # a compressed body that inflates past this is named, not decoded (a zip bomb)


def _inflate(body):
    """zlib (kombu's gzip and zlib), at most MAX_BODY_BYTES."""
    inflater = zlib.decompressobj()
    data = inflater.decompress(body, MAX_BODY_BYTES)
    if inflater.unconsumed_tail:
        raise ValueError(f"it inflates past {MAX_BODY_BYTES >> 20} MiB")
    if not inflater.eof:
        raise ValueError("the compressed body is cut short")
    return data


def _bunzip(body):
    """bzip2, at most MAX_BODY_BYTES."""
    unzipper = bz2.BZ2Decompressor()
    data = unzipper.decompress(body, MAX_BODY_BYTES)
    if not unzipper.eof:
        raise ValueError(f"it inflates past {MAX_BODY_BYTES >> 20} MiB" if not unzipper.needs_input
                         else "the compressed body is cut short")
    return data


_DECOMPRESS = {"application/x-gzip": _inflate, "gzip": _inflate, "zlib": _inflate,
               "application/x-bz2": _bunzip, "bzip2": _bunzip}
_NOT_DECODED = {"application/x-python-serialize": "pickle", "application/x-msgpack": "msgpack",
                "application/x-yaml": "yaml"}


def redis_message(queue, raw):
    """Decode one element of a Redis queue list: kombu's JSON envelope around the body. Never raises."""
    return redis_message_and_envelope(queue, raw)[0]


def redis_message_and_envelope(queue, raw):
    """``(record, envelope)``: the record of ``redis_message`` and the parsed envelope (a dict), or None when
    it is not one; for those who also rewrite the envelope (cq-move), so that it is parsed once."""
    try:
        envelope = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return _not_a_message(queue, f"not JSON: {exc}", len(raw)), None
    properties = envelope.get("properties") if isinstance(envelope, dict) else None
    if not isinstance(properties, (dict, type(None))) or not isinstance(envelope, dict):
        return _not_a_message(queue, "not a kombu envelope (an object with headers, properties and body)",
                              len(raw)), None
    properties = properties or {}
    return task_message(queue, envelope.get("headers"), properties.get("priority"), envelope.get("content-type"),
                        envelope.get("body"), properties.get("body_encoding")), envelope


def _not_a_message(queue, why, size):
    from celops import records

    return records.error(f"not a kombu message: {why}", queue=queue, size=size)


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


_JSON_KIND = {str: "a string", int: "a number", float: "a number", bool: "a boolean", list: "a list",
              dict: "an object", type(None): "null"}


def _kind(value):
    return _JSON_KIND.get(type(value), type(value).__name__)


def _typed(source, name, expected, problems, where="header"):
    """``source[name]`` if it is of the ``expected`` type (or absent/null); otherwise None, and a problem named."""
    return _checked(source.get(name), name, expected, problems, where)


def _checked(value, name, expected, problems, where="header"):
    """``value`` if it is of the ``expected`` type (or null); otherwise None, and a problem named."""
    if value is None or value.__class__ is expected:  # the common case first: JSON gives exact types
        return value
    if isinstance(value, expected) and not (expected is int and isinstance(value, bool)):
        return value
    problems.append(f"{where} {name!r} is {_kind(value)}, not {_JSON_KIND[expected]}")
    return None


def _body_bytes(body, encoding):
    """The body's bytes from the envelope's text; raises ValueError saying what is wrong with it."""
    if body is None:
        return b""
    if not isinstance(body, str):
        raise ValueError(f"the body is {_kind(body)}, not a string")
    if encoding is None or encoding == "utf-8":
        return body.encode("utf-8", "surrogatepass")
    if encoding != "base64":
        raise ValueError(f"unknown body encoding {encoding!r}")
    try:
        return binascii.a2b_base64(body, strict_mode=True)  # the common case, without b64decode's regex
    except (binascii.Error, ValueError):
        pass  # b64decode says what is wrong, in its words
    try:
        return base64.b64decode(body, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"the body is not valid base64: {exc}") from None


_STRING_HEADERS = ("id", "task", "eta", "expires", "root_id", "parent_id", "origin", "compression")
_STRING_OR_NULL = frozenset((str, type(None)))


def task_message(queue, headers, priority, content_type, body, body_encoding=None):
    """A message record from a task message's headers and (encoded) body, protocol v2 or v1. Never raises.

    Whatever cannot be decoded is named in ``error``; the fields that could be read are kept. Every message
    a queue holds goes through here (cq-peek, cq-move): the fields are checked in one straight line.
    """
    problems = []
    if headers is None:
        headers = {}
    if headers.__class__ is dict or isinstance(headers, dict):
        get = headers.get
    else:
        get = {}.get
        problems.append(f"the headers are {_kind(headers)}, not an object")
    strings = list(map(get, _STRING_HEADERS))
    if not _STRING_OR_NULL.issuperset(map(type, strings)):  # one look at all of them: they almost always are
        strings = [_checked(value, name, str, problems) for value, name in zip(strings, _STRING_HEADERS)]
    task_id, task, eta, expires, root_id, parent_id, origin, compression = strings
    record = {"type": "message", "queue": queue, "uuid": task_id, "id": task_id, "task": task,
              "args": None, "kwargs": None, "eta": eta, "expires": expires,
              "retries": _checked(get("retries"), "retries", int, problems),
              "priority": _checked(priority, "priority", int, problems, "property"), "root_id": root_id,
              "parent_id": parent_id, "origin": origin, "headers": headers, "size": 0}
    try:
        raw = _body_bytes(body, body_encoding)
    except ValueError as exc:
        raw = None
        problems.append(str(exc))
        record["size"] = len(body.encode("utf-8", "surrogatepass")) if isinstance(body, str) else 0
    if raw is not None:
        record["size"] = len(raw)
        _decode_body(record, raw, compression, _checked(content_type, "content-type", str, problems, "property"),
                     problems)
    if problems:
        record["error"] = "; ".join(problems)
    return record


def _decode_body(record, body, compression, content_type, problems):
    """Fill ``args``/``kwargs`` (v2) or every field (v1) from the body bytes, or say why not."""
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
        record["args"] = _checked(payload[0], "args", list, problems, "body's")
        record["kwargs"] = _checked(payload[1], "kwargs", dict, problems, "body's")
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
