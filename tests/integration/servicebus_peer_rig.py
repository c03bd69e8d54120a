"""What the Service Bus test peer's SDK modules share (``test_servicebus_peer*.py``): the entities
each test's own peer has, the ``peer`` and ``client`` fixtures (this ``peer`` stands in for the
integration suites' shared one), and sending and receiving through the SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from azure.servicebus import ServiceBusMessage, ServiceBusReceivedMessage
from azure.servicebus.aio import ServiceBusClient, ServiceBusReceiver

from tests.servicebus_peer import EntityOptions, ServiceBusPeer

QUEUE = "cwi"
SLOW_LOCKS = "cwi-slow-locks"
LONG_LOCKS = "cwi-long-locks"  # a lock that outlasts any reconnect
SESSIONS = "cwi-sessions"
SHORT_SESSIONS = "cwi-short-sessions"
TOPIC = "events"
LOCK_S = 1.0

# Closing a handler otherwise waits out its keep-alive task's one-second sleep.
HANDLER: dict[str, Any] = {"keep_alive": 0}

ENTITIES = {
    QUEUE: EntityOptions(max_delivery_count=3, lock_duration_s=LOCK_S),
    SLOW_LOCKS: EntityOptions(lock_duration_s=2.0),
    LONG_LOCKS: EntityOptions(lock_duration_s=60.0),
    SESSIONS: EntityOptions(lock_duration_s=5.0, requires_session=True),
    SHORT_SESSIONS: EntityOptions(lock_duration_s=LOCK_S, requires_session=True),
    TOPIC: EntityOptions(lock_duration_s=LOCK_S, subscriptions=["erp", "audit"]),
}


@pytest.fixture
def peer() -> Iterator[ServiceBusPeer]:
    with ServiceBusPeer(entities=ENTITIES) as running:
        yield running


@pytest.fixture
async def client(peer: ServiceBusPeer) -> AsyncIterator[ServiceBusClient]:
    # No retries: an expected error must surface at once, not after the SDK's back-off.
    async with ServiceBusClient.from_connection_string(peer.connection_string, retry_total=0) as sb:
        yield sb


async def send(
    client: ServiceBusClient, entity: str, *sends: ServiceBusMessage | list[ServiceBusMessage]
) -> None:
    """One ``send_messages`` call per argument (a list goes as one batch), through one sender."""
    async with client.get_queue_sender(entity, **HANDLER) as sender:
        for message in sends:
            await sender.send_messages(message)


async def receive_one(receiver: ServiceBusReceiver, wait_s: float = 3.0) -> ServiceBusReceivedMessage:
    received = await receiver.receive_messages(max_message_count=1, max_wait_time=wait_s)
    assert len(received) == 1, "expected one message"
    return received[0]


async def receive_n(receiver: ServiceBusReceiver, count: int) -> list[ServiceBusReceivedMessage]:
    """Up to ``count`` messages: the SDK may hand them over in more than one batch."""
    received: list[ServiceBusReceivedMessage] = []
    while len(received) < count:
        batch = await receiver.receive_messages(max_message_count=count - len(received), max_wait_time=3)
        if not batch:
            break
        received += batch
    return received


def body(message: ServiceBusReceivedMessage) -> bytes:
    return b"".join(message.body)
