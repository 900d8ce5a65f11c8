"""Which queues exist, on either broker, shared by the cq-* commands."""

import re

# celery's own plumbing: remote-control mailboxes, their reply queues, event receivers.
_INTERNAL = re.compile(r"\.pidbox$|^celeryev\.|\.reply\.celery\.pidbox$|^celery@.*\.celery\.pidbox$")

BINDING_PREFIX = "_kombu.binding."


def is_internal(name):
    return bool(_INTERNAL.search(name))


def existing_queues(broker, timeout, management_url=None, include_internal=False):
    """Sorted names of the queues the broker knows, plus the app's (or celery's default)."""
    if broker.transport == "redis":
        names = _redis_queues(broker, broker.redis(timeout))
    else:
        from celops.core.rabbit import Management

        broker.kombu(timeout).release()  # the broker itself first: its errors name the broker URL
        names = {queue["name"] for queue in Management(broker, management_url, timeout).queues(["name"])}
    names.update(broker.queues or ["celery"])
    return sorted(name for name in names if include_internal or not is_internal(name))


def _redis_queues(broker, client):
    """Queue names from kombu's binding sets ``_kombu.binding.<exchange>``, found by SCAN."""
    pattern = broker.key(BINDING_PREFIX).replace("\\", "\\\\").replace("*", "\\*") + "*"
    binding_keys = list(client.scan_iter(match=pattern, count=1000))
    pipe = client.pipeline(transaction=False)
    for key in binding_keys:
        pipe.smembers(key)
    sep = broker.sep.encode()
    names = set()
    for members in pipe.execute():
        for member in members:
            names.add(member.split(sep)[-1].decode("utf-8", "replace"))
    return names
