"""RabbitMQ as celops talks to it: one place that picks the stack and connects (failover lists included).

Lean ``amqpwire`` for the pidbox mailbox (cctl's start-up time); kombu and
py-amqp for passive declares, purges, event consumers and moving or writing
messages; the management API for what only it knows (queue lists, unacked
counts, peeking).
"""

from celops.core.exits import UsageError
from celops.core.transport import Transport


class RabbitTransport(Transport):
    kind = "amqp"

    def existing_queues(self, timeout, management_url=None, include_internal=False, client=None, warn=None):
        """Sorted names of the vhost's queues, from the management API (the broker itself checked first)."""
        from celops.core.queues import is_internal
        from celops.core.rabbit import Management

        self.kombu(timeout).release()  # the broker itself first: its errors name the broker URL
        names = {queue["name"] for queue in Management(self.broker, management_url, timeout).queues(["name"])}
        return sorted(name for name in names if include_internal or not is_internal(name))

    def measurer(self, names, timeout, management_url=None, warn=None):
        """A function returning one batch of queue records (``queues.rabbit_lengths``) on one connection."""
        from celops.core.exits import BrokerUnavailable
        from celops.core.queues import rabbit_lengths

        broker = self.broker
        connection = self.kombu(timeout)

        def measure():
            try:
                return rabbit_lengths(broker, connection, names, timeout, management_url, warn)
            except connection.connection_errors as exc:
                raise BrokerUnavailable(broker.url, str(exc) or type(exc).__name__) from exc
        return measure

    def publisher(self, timeout):
        """Publisher confirms: ``publish`` returns once RabbitMQ confirmed every message, routed to its queue."""
        from celops.core.rabbit_move import ConfirmedPublisher

        connection = self.kombu(timeout)
        try:
            return ConfirmedPublisher(connection, timeout)
        except BaseException:
            connection.release()
            raise

    def check_destination(self, queue, timeout, warn):
        """RabbitMQ drops what is published to a queue it lacks: a missing destination stops the move (exit 1)."""
        from celops.core.exits import CelopsError
        from celops.core.queues import UnknownQueue, declare_passive

        connection = self.kombu(timeout)
        try:
            declare_passive(connection, queue)
        except UnknownQueue as unknown:
            raise CelopsError(f"{unknown}: declare it first (a worker started with -Q {queue} does)") from None
        finally:
            connection.release()

    def queue_work(self, queue, timeout, warn):
        from celops.core.rabbit_move import RabbitQueueWork

        return RabbitQueueWork(self, queue, timeout, warn)

    def purger(self, timeout, unacked, warn):
        from celops.core.purge import RabbitPurger

        if unacked:
            raise UsageError("--unacked is for Redis; RabbitMQ requeues unacked messages itself (see UNACKED)")
        return RabbitPurger(self, timeout)

    def open_mailbox(self, timeout, warn=None):
        from celops.core.broadcast import AmqpMailbox

        return AmqpMailbox(self.broker, timeout)

    def event_source(self, args):
        from celops.core.amqp_events import AmqpEventSource

        return AmqpEventSource(self.broker, args)

    def peek(self, queue, offset, limit, timeout, management_url=None, warn=None):
        """The first ``offset + limit`` messages (limit None: as many as the queue holds ready now), requeued."""
        from celops.core.decode import rabbit_message
        from celops.core.queues import declare_passive
        from celops.core.rabbit import Management

        connection = self.kombu(timeout)  # the broker itself first: its errors name the broker URL
        try:
            ready, _ = declare_passive(connection, queue)  # raises UnknownQueue for a queue RabbitMQ does not know
        finally:
            connection.release()
        if limit is None:
            limit = ready
        if limit <= 0:
            return
        api = Management(self.broker, management_url, timeout)
        for message in api.get_messages(queue, offset + limit)[offset:]:
            yield rabbit_message(queue, message)
