"""Moving, removing and trimming waiting messages of a Redis queue, all of its priority lists, atomically per message.

Delivery order is kombu's: the priority lists in step order (the bare name,
step 0, first), and within a list the right end, where kombu's RPOP takes
the oldest message, first. A walk reads a list a chunk at a time (LRANGE),
picks the selected messages in Python, and hands them to one script call
that removes each one (and pushes its re-addressed copy onto the
destination's list of the same step) only if it is still there: a message a
worker took meanwhile is neither moved nor reported.

The common case is cheaper: when the selected messages are the oldest of the
list, one after the other, and nothing touched the list since it was read
(WATCH), one transaction trims them off and pushes their copies (MULTI, LTRIM,
LPUSH, EXEC), without handing every message to a script (which costs Redis
more per byte than the move itself). If anything touched the list, EXEC does
nothing and the script does the work.
"""

import os
from collections import namedtuple

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


def readdressed(raw, envelope, queue, tag):
    """The envelope ``raw`` (``envelope``: it parsed, or None) as kombu would write it published to ``queue``
    through the default exchange, with the delivery tag ``tag`` (``fresh_delivery_tags``).

    Body, headers and every other property are kept as they are; delivery_info
    names the destination and the delivery tag is new (kombu's own
    ``_inplace_augment_message`` does the same on publish). Both are written
    as kombu's JSON ``dumps`` writes them: in place when each appears once as
    kombu writes it (the rest of the bytes are then the source's own), else
    the whole envelope is written out again. What is not a kombu envelope
    moves as it is.
    """
    properties = envelope.get("properties") if envelope.__class__ is dict else None
    if properties.__class__ is not dict:
        return raw
    delivery_info = properties.get("delivery_info")
    if delivery_info.__class__ is dict and "delivery_tag" in properties:
        old_info, new_info = _address_texts(delivery_info, queue)
        old_tag = b'"delivery_tag": ' + _kombu_json(properties["delivery_tag"]).encode()
        # kombu's JSON is ASCII and ``raw`` parsed, so valid UTF-8: replacing bytes is replacing text. Once
        # each: a text that is also elsewhere (a header's) would be ambiguous. (Each scan of a message costs
        # as much as the rest of its re-addressing: three here.)
        parts = raw.split(old_info)
        if len(parts) == 2 and raw.count(old_tag) == 1:
            new_tag = b'"delivery_tag": "%s"' % tag.encode()
            return b"".join((parts[0].replace(old_tag, new_tag), new_info, parts[1].replace(old_tag, new_tag)))
    elif delivery_info is not None and delivery_info.__class__ is not dict:
        return raw
    import json

    envelope = json.loads(raw)  # as kombu reads it: orjson reads an integer beyond 64 bits as a float
    properties = envelope["properties"]
    properties["delivery_info"] = dict(properties.get("delivery_info") or {}, exchange="", routing_key=queue)
    properties["delivery_tag"] = tag
    return _kombu_json(envelope).encode()


_spare_tags = []  # made CHUNK at a time; a forked process (two_cores) makes its own


def _next_delivery_tag():
    if not _spare_tags:
        _spare_tags.extend(reversed(fresh_delivery_tags(CHUNK)))
    return _spare_tags.pop()


os.register_at_fork(after_in_child=_spare_tags.clear)


_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def fresh_delivery_tags(count):
    """``count`` random UUIDs (version 4, as kombu's ``uuid()`` makes delivery tags), from one read of
    urandom: ``uuid.uuid4()`` reads it once per message."""
    hexes = os.urandom(16 * count).hex()
    tags = []
    for start in range(0, 32 * count, 32):
        digits = hexes[start:start + 32]
        tags.append(f"{digits[:8]}-{digits[8:12]}-4{digits[13:16]}-{_VARIANT[digits[16]]}{digits[17:20]}-"
                    f"{digits[20:]}")
    return tags


_last_address = [None, None, None]  # a delivery_info, a queue, and their texts: a queue's messages share one


def _address_texts(delivery_info, queue):
    """kombu's text of ``delivery_info``, and of it re-addressed to ``queue``, as bytes."""
    last_info, last_queue, texts = _last_address
    if queue != last_queue or delivery_info != last_info:
        texts = (b'"delivery_info": ' + _kombu_json(delivery_info).encode(),
                 b'"delivery_info": ' + _kombu_json(dict(delivery_info, exchange="", routing_key=queue)).encode())
        _last_address[:] = [dict(delivery_info), queue, texts]
    return texts


def _kombu_json(value):
    """``value``, parsed from JSON, as kombu's JSON ``dumps`` writes it.

    kombu's ``dumps`` is ``json.dumps`` with an encoder whose ``default`` only
    meets what JSON cannot hold, which a parsed value never is: so
    ``json.dumps`` writes the same bytes, without importing kombu. A plain
    ASCII string (no quote, backslash or control character: what json leaves
    unescaped), such as a delivery tag, is written without the call.
    """
    if value.__class__ is str and value.isascii() and value.isprintable() and '"' not in value \
            and "\\" not in value:
        return f'"{value}"'
    import json

    return json.dumps(value)


Take = namedtuple("Take", "prepare apply")
Take.__doc__ = """What a walk does with the messages it selects: ``prepare(record, raw, envelope)`` makes each
one's part as it is read (``envelope``: ``raw`` parsed, or None), while its bytes are fresh in the cache (a
second pass over a chunk costs a third more); ``apply(index, [(raw, part), ...], oldest)`` takes a chunk's
messages from list ``index`` at once, and returns one flag per message, whether it went (``oldest``: they are
the oldest of the list, one after the other, as read since the list was watched)."""


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

    def walk(self, selection, take, finish=None):
        """Yield ``finish(record)`` (default: the record) of each selected message that ``take`` removed, in
        delivery order.

        ``take`` (a Take) prepares each selected message as it is read, then
        takes a chunk's at once: one flag per message, whether it went.
        ``take`` None is a dry run: every selected message is yielded.
        ``finish`` runs as each message is read, whether it goes or not.

        Two cores examine the messages (``two_cores``): a chunk's head here,
        its tail in a helper. Each read also reads the next chunk's tail
        ahead, for the helper to work on while this process takes the chunk:
        those results are used only if the next chunk's tail, read afresh
        (and watched), is the same bytes.
        """
        from celops.core.two_cores import TwoCores

        remaining = selection.limit
        with TwoCores(self._examiner(selection, take, finish)) as cores:
            for index, key in enumerate(self.keys):
                position = 0  # delivery position in this list of the next message not yet seen
                ahead = None  # (ticket, messages): the next chunk's tail as read ahead, in the helper's hands
                while remaining is None or remaining > 0:
                    size = CHUNK if remaining is None or selection.filtered else min(CHUNK, remaining)
                    cut = cores.cut(size)
                    # The next chunk starts where this one ends, in the list as read now, whatever the take
                    # removes of this one (it removes nothing else). Its size is known only without a limit.
                    next_tail = (position + size + cut, position + 2 * size) if size == CHUNK else None
                    chunk, read_ahead = self._read(key, position, size, take is not None, next_tail)
                    head, tail = chunk[:cut], chunk[cut:]
                    ticket = ahead[0] if ahead is not None and ahead[1] == tail else cores.submit(tail)
                    ahead = (cores.submit(read_ahead), read_ahead) if read_ahead else None
                    finished, prepared = [], []
                    oldest = position == 0  # so far the picked are the oldest of the list, one after the other
                    for raw, result in zip(chunk, cores.work(head) + cores.results(ticket, tail)):
                        if remaining is not None and len(finished) >= remaining:
                            break
                        if result is None:
                            oldest = False
                        else:
                            finished.append(result[0])
                            prepared.append((raw, result[1]))
                    went = [True] * len(finished) if take is None else take.apply(index, prepared, oldest)
                    gone = 0
                    for item, flag in zip(finished, went):
                        if flag:
                            gone += 1
                            yield item
                    if remaining is not None:
                        remaining -= gone
                    position += len(chunk) - (0 if take is None else gone)
                    if len(chunk) < size:
                        break

    def _read(self, key, position, size, watch, ahead=None):
        """``size`` messages of list ``key`` from delivery ``position`` on, and those between the delivery
        positions ``ahead`` (a pair, or None), each in delivery order. ``watch``: with the list watched from
        before the read, so that a take may trim the oldest in one transaction."""
        reads = [("LRANGE", key, -(start + count), -(start + 1)) for start, count in
                 [(position, size)] + ([(ahead[0], ahead[1] - ahead[0])] if ahead else [])]
        replies = self.client.checked(("UNWATCH",), ("WATCH", key), *reads)[2:] if watch \
            else self.client.checked(*reads)
        for reply in replies:
            reply.reverse()
        return replies[0], (replies[1] if ahead else None)

    def _examiner(self, selection, take, finish):
        """The function of a chunk that decodes each message: None when it is not selected, else
        ``(finish(record), take.prepare(...))``. Everything a message costs in Python is here, in one pass (a
        second pass over a chunk costs a third more)."""
        from celops.core.decode import redis_message_and_envelope

        queue = self.queue
        matches = selection.matches if selection.filtered else None  # unfiltered, every message is selected
        prepare = take.prepare if take is not None else lambda record, raw, envelope: None

        def examine(chunk):
            results = []
            for raw in chunk:
                record, envelope = redis_message_and_envelope(queue, raw)
                if matches is None or matches(record):
                    results.append((record if finish is None else finish(record), prepare(record, raw, envelope)))
                else:
                    results.append(None)
            return results
        return examine

    def count(self, selection):
        """Exact: a dry-run walk."""
        return sum(1 for _ in self.walk(selection, None)), True

    def move_within(self, to_queue):
        """A Take that moves each message to ``to_queue``'s list of the same priority step, re-addressed."""
        destination_keys = [key for _, key in self.broker.priority_keys(to_queue)]
        return Take(lambda record, raw, envelope: readdressed(raw, envelope, to_queue, _next_delivery_tag()),
                    lambda index, pairs, oldest: self._take(index, pairs, oldest, destination_keys[index]))

    def send_to(self, publisher, to_queue):
        """A Take that publishes each message to another broker and removes it here once that returned.

        A message that is no kombu envelope cannot be re-published: it stays, named in a warning.
        """
        from celops.core.transport import envelope_of_kombu

        def prepare(record, raw, parsed):
            """The message's Envelope, or why it has none (said in ``apply``: this may run in a helper)."""
            try:
                return envelope_of_kombu(parsed)
            except (ValueError, TypeError, AttributeError) as exc:
                return str(record.get("error") if record["type"] == "error" else exc)

        def apply(index, prepared, oldest):
            envelopes = []
            for raw, envelope in prepared:
                if isinstance(envelope, str):
                    self.warn(f"a message of {self.queue!r} that is not a kombu envelope stays there ({envelope})")
                else:
                    envelopes.append((raw, envelope))
            publisher.publish([envelope for _, envelope in envelopes], to_queue)
            # one gone meanwhile is still moved; one left there (not an envelope) ends the oldest run
            self._take(index, [(raw, b"") for raw, _ in envelopes], oldest and len(envelopes) == len(prepared))
            return [not isinstance(envelope, str) for _, envelope in prepared]
        return Take(prepare, apply)

    def remover(self):
        """A Take that removes each message."""
        return Take(lambda record, raw, envelope: b"", self._take)

    def _take(self, index, pairs, oldest, destination_key=None):
        """Take ``pairs`` of (raw, copy or b"") from one list, pushing the copies; one flag per message.

        ``oldest`` (they are the oldest of the list, in order, and the list is
        watched since it was read): one transaction, unless the list changed
        meanwhile; otherwise, or then, the take script, message by message.
        """
        if not pairs:
            return []
        source = self.keys[index]
        if oldest:
            copies = [copy for _, copy in pairs if copy]  # one LPUSH leaves them as one by one would
            push = [("LPUSH", destination_key, *copies)] if copies else []
            *_, done = self.client.checked(("MULTI",), ("LTRIM", source, 0, -len(pairs) - 1), *push, ("EXEC",))
            if done is not None:  # None: the list changed since it was read, and nothing was done
                self.client.raised(done)
                return [True] * len(pairs)
        keys = [source] + ([destination_key] if destination_key else [])
        flags = self.client.call("EVAL", _TAKE, len(keys), *keys, *(part for pair in pairs for part in pair))
        return [flag == 1 for flag in flags]

    def trim(self, count, keep, newest, dry_run):
        """Remove ``count`` messages (``keep``: all but ``count``) from the front of delivery order (``newest``:
        from its back), all priority lists in one script; returns how many went (or would)."""
        removing_from = "front" if keep == newest else "back"
        return self.client.call("EVAL", _TRIM, len(self.keys), *self.keys, count, "keep" if keep else "drop",
                                removing_from, "1" if dry_run else "0")
