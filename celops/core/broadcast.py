"""Remote control through celery's pidbox mailbox, as ``app.control.broadcast`` does it.

Only a broker connection is needed, no app: the mailbox is celery's default
``celery`` fanout exchange (``celery.pidbox``) with JSON bodies.
"""

MAILBOX_NAME = "celery"


def mailbox(connection):
    """celery's control mailbox bound to ``connection`` (kombu Mailbox, JSON, fanout)."""
    from kombu.pidbox import Mailbox

    return Mailbox(MAILBOX_NAME, type="fanout", accept=["json"], serializer="json")(connection)


def send(connection, command, arguments=None, destination=None):
    """Fire and forget: broadcast ``command`` without waiting for replies (``heartbeat``, ``enable_events``)."""
    mailbox(connection)._broadcast(command, arguments or {}, destination, reply=False)
