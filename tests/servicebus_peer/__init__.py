"""An AMQP 1.0 Service Bus test peer (python-qpid-proton) for the real azure-servicebus SDK.

    with ServiceBusPeer(entities={"cwi": EntityOptions(lock_duration_s=2)}) as peer:
        ServiceBusClient.from_connection_string(peer.connection_string)

Entities: queues; topics (``EntityOptions(subscriptions=[...])``), received from as
``<topic>/Subscriptions/<name>``; every entity's ``<entity>/$DeadLetterQueue``.
Faults: ``drop_connections()`` (locks go with the connection, per Microsoft's docs),
``go_offline()`` / ``come_back()`` (an outage: connections refused, messages kept, the same port
after), ``stall(seconds)`` (a broker too busy to answer, even to accept a connection) and
``expire_lock(entity, message_id=None)``. Inspection: ``messages``, ``dead_letters`` and the
``*_count`` methods; ``send`` seeds a message without an SDK sender. What the SDK does on the
wire: docs/servicebus-wire.md.
"""

from tests.servicebus_peer.entities import EntityOptions
from tests.servicebus_peer.peer import MessageSnapshot, PeerFailed, ServiceBusPeer

__all__ = ["EntityOptions", "MessageSnapshot", "PeerFailed", "ServiceBusPeer"]
