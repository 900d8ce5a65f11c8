"""Custom remote-control commands, registered as the workers guide shows, for ``cctl call``."""

from celery.worker.control import control_command, inspect_command


@control_command(args=[("n", int)], signature="[N=1]")
def increase_prefetch_count(state, n=1):
    """The workers guide's example: raise the consumer's prefetch count by ``n``."""
    state.consumer.qos.increment_eventually(n)
    return {"ok": f"prefetch count incremented by {n}"}


@inspect_command()
def current_prefetch_count(state):
    """What increase_prefetch_count changed, read back."""
    return {"prefetch_count": state.consumer.qos.value}


@inspect_command()
def argument_types(state, **arguments):
    """Each keyword argument as [JSON type name, value]: shows how cctl call typed them."""
    names = {bool: "boolean", int: "number", float: "number", str: "string", list: "array", dict: "object",
             type(None): "null"}
    return {key: [names[type(value)], value] for key, value in sorted(arguments.items())}
