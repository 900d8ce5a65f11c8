"""Basic.Publish frames byte for byte as py-amqp writes them for kombu's pyamqp transport, at a fraction of the cost.

py-amqp writes each message's properties a field at a time (a BytesIO write
and a chain of isinstance per header value) and each publish in a system call
of its own (after polling the socket for Connection.Blocked): most of what a
move between brokers costs. Here the header items that repeat from message to
message (task name, lang, the nulls) are encoded once, and a whole chunk of
publishes goes in one write. kombu still builds every message (its Producer
and its transport's ``prepare_message``); only the encoding of what it hands
to py-amqp is done here. Whatever this does not encode as py-amqp does (a
Decimal or datetime header, a key or short string over 255 bytes, a text
body) py-amqp's own frame writer encodes (``py_amqp_frames``); the tests
compare both on fuzzed messages.
"""

from struct import Struct, pack

# py-amqp's Message.PROPERTIES (basic class): name and AMQP type, in flag order (the tests compare them).
PROPERTIES = (("content_type", "s"), ("content_encoding", "s"), ("application_headers", "F"),
              ("delivery_mode", "o"), ("priority", "o"), ("correlation_id", "s"), ("reply_to", "s"),
              ("expiration", "s"), ("message_id", "s"), ("timestamp", "L"), ("type", "s"), ("user_id", "s"),
              ("app_id", "s"), ("cluster_id", "s"))
BASIC_PUBLISH = pack(">HH", 60, 40)
_FRAME_HEAD = Struct(">BHI")
_INT32, _INT64, _DOUBLE, _LONG, _OCTET, _LONGLONG = (Struct(fmt).pack for fmt in (">ci", ">cq", ">cd", ">I", "B", ">Q"))
_ITEMS = {}  # (key, type, value) -> the table item's bytes, for the scalar header values, which repeat
_MOST_ITEMS = 10_000


class Unusual(Exception):
    """A value this encoder leaves to py-amqp."""


def publish_frames(channel_id, frame_max, message, exchange, routing_key, mandatory=False, immediate=False):
    """The frames py-amqp writes for ``basic_publish(message, exchange, routing_key, mandatory, immediate)``."""
    try:
        return _frames(channel_id, frame_max, message, exchange, routing_key, mandatory, immediate)
    except Exception:  # noqa: BLE001 (py-amqp encodes it, or raises its own error)
        return py_amqp_frames(channel_id, frame_max, message, exchange, routing_key, mandatory, immediate)


def py_amqp_frames(channel_id, frame_max, message, exchange, routing_key, mandatory=False, immediate=False):
    """The same frames from py-amqp's own writer (Channel.basic_publish's path), gathered instead of sent."""
    from types import SimpleNamespace

    from amqp import spec
    from amqp.method_framing import frame_writer
    from amqp.serialization import dumps

    written = []
    write_frame = frame_writer(SimpleNamespace(frame_max=frame_max, bytes_sent=0),
                               SimpleNamespace(write=lambda data: written.append(bytes(data))))
    write_frame(1, channel_id, spec.Basic.Publish, dumps("Bssbb", (0, exchange, routing_key, mandatory, immediate)),
                message)
    return b"".join(written)


def _frames(channel_id, frame_max, message, exchange, routing_key, mandatory, immediate):
    body = message.body
    if body.__class__ is not bytes:
        raise Unusual("a body that is not bytes")
    method = BASIC_PUBLISH + b"\0\0" + _shortstr(exchange) + _shortstr(routing_key) \
        + _OCTET(bool(mandatory) | bool(immediate) << 1)
    header = pack(">HHQ", 60, 0, len(body)) + _properties(message.properties)
    step = frame_max - 8
    return b"".join([_frame(1, channel_id, method), _frame(2, channel_id, header),
                     *(_frame(3, channel_id, body[start:start + step]) for start in range(0, len(body), step))])


def _frame(kind, channel_id, payload):
    return _FRAME_HEAD.pack(kind, channel_id, len(payload)) + payload + b"\xce"


def _properties(properties):
    flags = 0
    values = []
    for shift, (name, kind) in zip(range(15, 1, -1), PROPERTIES):
        value = properties.get(name)
        if value is None:
            continue
        flags |= 1 << shift
        if kind == "s":
            values.append(_shortstr(value or ""))
        elif kind == "F":
            values.append(_table(value or {}))
        elif kind == "o":
            values.append(_OCTET(value))
        else:
            values.append(_LONGLONG(value))
    return pack(">H", flags) + b"".join(values)


def _shortstr(text):
    data = text.encode("utf-8", "surrogatepass") if text.__class__ is str else text
    if data.__class__ is not bytes:
        raise Unusual(f"a short string that is {type(text).__name__}")
    return _OCTET(len(data)) + data


def _longstr(data):
    return b"S" + _LONG(len(data)) + data


def _table(mapping):
    if mapping.__class__ is not dict:
        raise Unusual("a table that is no dict")
    items = []
    for key, value in mapping.items():
        kind = value.__class__
        if kind is str or kind is int or kind is bool or value is None:  # floats are not kept: -0.0 == 0.0
            memo = (key, kind, value)
            item = _ITEMS.get(memo)
            if item is None:
                item = _shortstr(key) + _value(value)
                if len(_ITEMS) < _MOST_ITEMS:
                    _ITEMS[memo] = item
        else:
            item = _shortstr(key) + _value(value)
        items.append(item)
    data = b"".join(items)
    return _LONG(len(data)) + data


def _value(value):
    """One table or array value, as py-amqp's ``_write_item`` writes it."""
    kind = value.__class__
    if kind is str:
        return _longstr(value.encode("utf-8", "surrogatepass"))
    if kind is bytes:
        return _longstr(value)
    if kind is bool:
        return b"t" + _OCTET(value)
    if kind is float:
        return _DOUBLE(b"d", value)
    if kind is int:
        return _INT64(b"L", value) if value > 2147483647 or value < -2147483647 else _INT32(b"I", value)
    if kind is dict:
        return b"F" + _table(value)
    if kind is list or kind is tuple:
        data = b"".join(_value(item) for item in value)
        return b"A" + _LONG(len(data)) + data
    if value is None:
        return b"V"
    raise Unusual(f"a {kind.__name__} in a table")
