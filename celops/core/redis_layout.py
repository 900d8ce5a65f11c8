"""How a Redis cluster lays out its keys when celops has no -A app to ask: kombu's sep and priority steps.

kombu's ``sep`` and ``priority_steps`` live in the app's transport options,
which celops cannot see without -A; kombu's defaults misread a cluster
configured otherwise (counts and purges miss lists, cctl writes a binding the
workers cannot split). What the cluster wrote tells them instead.
"""

import re

from celops.core.exits import NoPermission

BINDING_PREFIX = "_kombu.binding."


def _glob_escape(text):
    return re.sub(r"([\\*?\[\]])", r"\\\1", text)


def binding_members(broker, client, keys=None):
    """Every member of kombu's binding sets ``_kombu.binding.<exchange>`` (found by SCAN unless ``keys`` given).

    A key of another type under that name is skipped: it binds nothing.
    """
    if keys is None:
        keys = list(client.scan(match=_glob_escape(broker.key(BINDING_PREFIX)) + "*"))
    members = []
    for reply in client.pipeline(("SMEMBERS", key) for key in keys):
        if isinstance(reply, NoPermission):
            raise reply
        if isinstance(reply, list):
            members.extend(reply)
    return members


def adopt_cluster_layout(broker, client, warn=None, binding_keys=None, find_steps=True):
    """Without -A, make ``broker`` use the separator and priority steps the cluster's own keys show.

    The separator is the one that splits
    the most binding members into routing key, pattern and queue; the steps
    are those of the lists that exist under it (one SCAN MATCH walk, COUNT
    1000 a call). Done once per broker; ``binding_keys`` limits the sets read
    (cctl reads the two pidbox ones).
    """
    if broker.app is not None or broker.kind != "redis" or getattr(broker, "layout_adopted", False):
        return
    broker.layout_adopted = True
    members = binding_members(broker, client, binding_keys)
    inferred = []
    sep = infer_sep(members, broker.sep)
    if sep != broker.sep:
        broker.transport_options["sep"] = sep
        inferred.append(f"separator {sep!r}")
    if find_steps:
        names = {member.split(sep.encode())[-1].decode("utf-8", "replace") for member in members}
        steps = sorted({*broker.priority_steps, *_list_steps(broker, client, names)})
        if tuple(steps) != broker.priority_steps:
            broker.transport_options["priority_steps"] = steps
            inferred.append(f"priority steps {','.join(map(str, steps))}")
    if inferred and warn:
        warn(f"no -A app: using {' and '.join(inferred)}, as found on the broker (-A gives the app's own)")


def infer_sep(members, configured):
    """The separator that splits the most binding members into three parts, ending in a queue name.

    Candidates are ``configured`` and what members' shapes suggest: ``Q sep
    PATTERN sep Q`` (a queue bound under its own name, celery's default) and
    ``sep sep Q`` (a fanout binding, such as a worker's mailbox). A tie keeps
    ``configured``.
    """
    candidates = {configured.encode()}
    for member in members:
        candidates.update(_sep_candidates(member))

    def score(sep):
        return sum(1 for member in members if _splits_in_three(member, sep))

    best = max(sorted(candidates), key=score)
    return best.decode("utf-8", "replace") if score(best) > score(configured.encode()) else configured


def _sep_candidates(member):
    for size in range((len(member) - 1) // 2, 0, -1):  # Q sep PATTERN sep Q: the longest Q
        if member[:size] == member[-size:]:
            middle = member[size:-size]
            yield from (middle[:k] for k in range(1, len(middle) // 2 + 1) if middle[:k] == middle[-k:])
            break
    for size in range(1, len(member) // 2 + 1):  # sep sep Q
        if member[:size] == member[size:2 * size]:
            yield member[:size]


def _splits_in_three(member, sep):
    parts = member.split(sep)
    return len(parts) == 3 and parts[2] != b""


def _list_steps(broker, client, names):
    """Priority steps of the existing lists ``QUEUE + sep + STEP`` of the queues ``names``."""
    prefix, sep = broker.key(""), broker.sep
    steps = set()
    for key in client.scan(match=_glob_escape(prefix) + "*" + _glob_escape(sep) + "[0-9]*"):
        base, _, step = key.decode("utf-8", "replace")[len(prefix):].rpartition(sep)
        if step.isdigit() and base in names:
            steps.add(int(step))
    return steps
