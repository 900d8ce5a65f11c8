"""Moving, removing and trimming waiting messages of a Redis queue, all of its priority lists, atomically per message.

Delivery order is kombu's: the priority lists in step order (the bare name,
step 0, first), and within a list the right end, where kombu's RPOP takes
the oldest message, first. A walk reads a list a chunk at a time (LRANGE),
picks the selected messages in Python, and hands them to one script call
that removes each one (and pushes its re-addressed copy onto the
destination's list of the same step) only if it is still there: a message a
worker took meanwhile is neither moved nor reported.
"""

import uuid

CHUNK = 1000  # messages per LRANGE and per script call

# KEYS[1] the source list, KEYS[2] the destination list (may be absent); ARGV: pairs of
# (message as it is, its copy for the destination or "" to only remove it). The oldest end is
# tried first (O(1) when the selection is a run of the oldest); else LREM from that end.
# Returns 1 per message removed (and pushed), 0 per message no longer there.
_TAKE = """
local done = {}
for i = 1, #ARGV, 2 do
  local gone = 0
  if redis.call('LINDEX', KEYS[1], -1) == ARGV[i] then
    redis.call('RPOP', KEYS[1])
    gone = 1
  else
    gone = redis.call('LREM', KEYS[1], -1, ARGV[i])
  end
  if gone == 1 and ARGV[i + 1] ~= '' then redis.call('LPUSH', KEYS[2], ARGV[i + 1]) end
  done[#done + 1] = gone
end
return done
"""

# KEYS: a queue's priority lists in delivery order. ARGV[1]: N; ARGV[2]: "drop" to remove N, "keep" to
# remove all but N; ARGV[3]: "front" to remove from the front of delivery order (the right ends of the first
# lists), "back" from its back (the left ends of the last lists); ARGV[4]: "1" to count only.
# Returns how many went (or would).
_TRIM = """
local total = 0
for i = 1, #KEYS do total = total + redis.call('LLEN', KEYS[i]) end
local left = tonumber(ARGV[1])
if ARGV[2] == 'keep' then left = math.max(0, total - left) end
local front, count_only = ARGV[3] == 'front', ARGV[4] == '1'
local removed = 0
local first, last, step = 1, #KEYS, 1
if not front then first, last, step = #KEYS, 1, -1 end
for i = first, last, step do
  if left <= 0 then break end
  local length = redis.call('LLEN', KEYS[i])
  local take = math.min(length, left)
  if take > 0 and not count_only then
    if take == length then redis.call('UNLINK', KEYS[i])
    elseif front then redis.call('LTRIM', KEYS[i], 0, length - take - 1)
    else redis.call('LTRIM', KEYS[i], take, -1) end
  end
  left = left - take
  removed = removed + take
end
return removed
"""


def readdressed(raw, queue):
    """The envelope ``raw`` as kombu would write it published to ``queue`` through the default exchange.

    Body, headers and every other property are kept as they are; delivery_info
    names the destination and the delivery tag is new (kombu's own
    ``_inplace_augment_message`` does the same on publish). Both are written
    with kombu's own JSON ``dumps``: in place when each appears once as
    kombu writes it (the rest of the bytes are then the source's own), else
    the whole envelope is written out again. What is not a kombu envelope
    moves as it is.
    """
    import orjson
    from kombu.utils.json import dumps

    try:
        envelope = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw
    properties = envelope.get("properties") if isinstance(envelope, dict) else None
    if not isinstance(properties, dict) or not isinstance(properties.get("delivery_info", {}), dict):
        return raw
    delivery_info = properties.setdefault("delivery_info", {})
    replacements = [(f'"delivery_info": {dumps(delivery_info)}', None)]
    delivery_info.update(exchange="", routing_key=queue)
    replacements[0] = (replacements[0][0], f'"delivery_info": {dumps(delivery_info)}')
    if "delivery_tag" in properties:
        old_tag = f'"delivery_tag": {dumps(properties["delivery_tag"])}'
        properties["delivery_tag"] = str(uuid.uuid4())
        replacements.append((old_tag, f'"delivery_tag": {dumps(properties["delivery_tag"])}'))
    text = raw.decode("utf-8", "surrogatepass")
    if all(text.count(old) == 1 for old, _ in replacements):
        for old, new in replacements:
            text = text.replace(old, new)
        return text.encode("utf-8", "surrogatepass")
    return dumps(envelope).encode()


class RedisQueueWork:
    """One source queue on one connection: walks of its priority lists, and trims.

    ``problem`` is a BadKey when one of its keys is not a list (then nothing
    is done to it); a queue with no list and no binding raises UnknownQueue.
    """

    moves_within = True  # a move to another queue of the same Redis is one script per chunk, no publisher

    def __init__(self, transport, queue, timeout, warn):
        from celops.core.queues import known_only, length_or_problem

        self.broker = transport.broker
        self.client = transport.client(timeout, warn)
        self.queue = queue
        self.warn = warn
        self.keys = [key for _, key in self.broker.priority_keys(queue)]
        replies = self.client.pipeline(("LLEN", key) for key in self.keys)
        lengths = [length_or_problem(self.client, queue, key, reply) for key, reply in zip(self.keys, replies)]
        self.problem = next((length for length in lengths if not isinstance(length, int)), None)
        if self.problem is None and not sum(lengths):
            (known,) = known_only(self.broker, self.client, [{"queue": queue}], lambda record: 0)
            if not isinstance(known, dict):
                self.client.close()
                raise known  # UnknownQueue

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.client.close()

    def walk(self, selection, take):
        """Yield the record of each selected message that ``take`` removed, in delivery order.

        ``take(index, [raw, ...])`` returns one flag per message: whether it
        went. ``take`` None is a dry run: every selected message is yielded.
        """
        from celops.core.decode import redis_message

        remaining = selection.limit
        for index, key in enumerate(self.keys):
            position = 0  # delivery position in this list of the next message not yet seen
            while remaining is None or remaining > 0:
                chunk = self.client.call("LRANGE", key, -(position + CHUNK), -(position + 1))
                chunk.reverse()
                picked = []
                for raw in chunk:
                    if remaining is not None and len(picked) >= remaining:
                        break
                    record = redis_message(self.queue, raw)
                    if selection.matches(record):
                        picked.append((record, raw))
                went = [True] * len(picked) if take is None else take(index, [raw for _, raw in picked])
                gone = 0
                for (record, _), flag in zip(picked, went):
                    if flag:
                        gone += 1
                        yield record
                if remaining is not None:
                    remaining -= gone
                position += len(chunk) - (0 if take is None else gone)
                if len(chunk) < CHUNK:
                    break

    def count(self, selection):
        """Exact: a dry-run walk."""
        return sum(1 for _ in self.walk(selection, None)), True

    def move_within(self, to_queue):
        """A ``take`` that moves each message to ``to_queue``'s list of the same priority step, re-addressed."""
        destination_keys = [key for _, key in self.broker.priority_keys(to_queue)]
        return lambda index, raws: self._take(index, [(raw, readdressed(raw, to_queue)) for raw in raws],
                                              destination_keys[index])

    def send_to(self, publisher, to_queue):
        """A ``take`` that publishes each message to another broker and removes it here once that returned.

        A message that is no kombu envelope cannot be re-published: it stays, named in a warning.
        """
        from celops.core.transport import envelope_of_kombu_json

        def take(index, raws):
            envelopes, flags = [], []
            for raw in raws:
                try:
                    envelopes.append((raw, envelope_of_kombu_json(raw)))
                    flags.append(True)
                except (ValueError, TypeError, AttributeError) as exc:
                    self.warn(f"a message of {self.queue!r} that is not a kombu envelope stays there ({exc})")
                    flags.append(False)
            publisher.publish([envelope for _, envelope in envelopes], to_queue)
            self._take(index, [(raw, b"") for raw, _ in envelopes])  # one gone meanwhile is still moved
            return flags
        return take

    def remover(self):
        """A ``take`` that removes each message."""
        return lambda index, raws: self._take(index, [(raw, b"") for raw in raws])

    def _take(self, index, pairs, destination_key=None):
        """Run the take script on one list: ``pairs`` of (raw, copy or b""); one flag per message."""
        if not pairs:
            return []
        keys = [self.keys[index]] + ([destination_key] if destination_key else [])
        flags = self.client.call("EVAL", _TAKE, len(keys), *keys, *(part for pair in pairs for part in pair))
        return [flag == 1 for flag in flags]

    def trim(self, count, keep, newest, dry_run):
        """Remove ``count`` messages (``keep``: all but ``count``) from the front of delivery order (``newest``:
        from its back), all priority lists in one script; returns how many went (or would)."""
        removing_from = "front" if keep == newest else "back"
        return self.client.call("EVAL", _TRIM, len(self.keys), *self.keys, count, "keep" if keep else "drop",
                                removing_from, "1" if dry_run else "0")
