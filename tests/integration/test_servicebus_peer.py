"""The Service Bus test peer through the real, unmodified azure-servicebus SDK (async client; one sync test).

Each test starts its own peer on 127.0.0.1 (a thread, milliseconds) with short lock durations,
so lock expiry is exercised with real time rather than a fake clock: the SDK reads the lock's
end from the wire and checks it against its own clock. Here: sending, settling, dead letters,
scheduling, peeking, deferral, topics, unknown entities and the sync client; locks, sessions and a
dropped connection: ``test_servicebus_peer_locks.py``; what they share: ``servicebus_peer_rig.py``.
"""

from __future__ import annotations

import datetime as dt
import socket
import threading
import time

import pytest
from azure.servicebus import ServiceBusClient as SyncServiceBusClient
from azure.servicebus import ServiceBusMessage, ServiceBusReceiveMode, ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusClient
from azure.servicebus.exceptions import MessagingEntityNotFoundError

from tests.integration.servicebus_peer_rig import (
    HANDLER,
    QUEUE,
    TOPIC,
    body,
    client,
    peer,
    receive_n,
    receive_one,
    send,
)
from tests.servicebus_peer import ServiceBusPeer

__all__ = ["client", "peer"]  # the fixtures: a peer of its own for each test, and an SDK client


async def test_send_single_and_batch_then_complete_removes_them(
    client: ServiceBusClient, peer: ServiceBusPeer
) -> None:
    single = ServiceBusMessage(b"one", message_id="m1", application_properties={"client": "acme"})
    batch = [ServiceBusMessage(b"two", message_id="m2"), ServiceBusMessage(b"three", message_id="m3")]
    await send(client, QUEUE, single, batch)
    assert [(m.message_id, m.body) for m in peer.messages(QUEUE)] == [
        ("m1", b"one"),
        ("m2", b"two"),
        ("m3", b"three"),
    ]
    assert peer.messages(QUEUE)[0].application_properties == {"client": "acme"}

    async with client.get_queue_receiver(QUEUE, **HANDLER) as receiver:
        received = await receive_n(receiver, 3)
        assert [body(m) for m in received] == [b"one", b"two", b"three"]
        assert [m.delivery_count for m in received] == [0, 0, 0]
        assert [m.sequence_number for m in received] == [1, 2, 3]
        assert received[0].application_properties == {b"client": b"acme"}
        now = dt.datetime.now(dt.UTC)
        assert all(m.locked_until_utc is not None and m.locked_until_utc > now for m in received)
        assert peer.active_count(QUEUE) == 3  # locked messages still count as active
        for message in received:
            await receiver.complete_message(message)
    assert peer.active_count(QUEUE) == 0


async def test_abandon_redelivers_with_delivery_count_plus_one(
    client: ServiceBusClient, peer: ServiceBusPeer
) -> None:
    peer.send(QUEUE, b"retry me", message_id="a1")
    async with client.get_queue_receiver(QUEUE, **HANDLER) as receiver:
        first = await receive_one(receiver)
        await receiver.abandon_message(first)
        again = await receive_one(receiver)
        assert (again.message_id, again.delivery_count) == ("a1", 1)
        await receiver.complete_message(again)


async def test_dead_letter_is_readable_from_the_dead_letter_queue(
    client: ServiceBusClient, peer: ServiceBusPeer
) -> None:
    peer.send(QUEUE, b'{"id": 7}', message_id="d1", application_properties={"entity": "invoice"})
    async with client.get_queue_receiver(QUEUE, **HANDLER) as receiver:
        received = await receive_one(receiver)
        await receiver.dead_letter_message(received, reason="MappingError", error_description="no VAT code")
    assert peer.active_count(QUEUE) == 0
    [dead] = peer.dead_letters(QUEUE)
    assert (dead.dead_letter_reason, dead.dead_letter_description) == ("MappingError", "no VAT code")

    async with client.get_queue_receiver(QUEUE, sub_queue=ServiceBusSubQueue.DEAD_LETTER, **HANDLER) as dlq:
        letter = await receive_one(dlq)
        assert (letter.dead_letter_reason, letter.dead_letter_error_description) == (
            "MappingError",
            "no VAT code",
        )
        assert (letter.message_id, body(letter)) == ("d1", b'{"id": 7}')
        assert (letter.application_properties or {})[b"entity"] == b"invoice"
        assert letter.dead_letter_source == QUEUE
        await dlq.complete_message(letter)
    assert peer.dead_letter_count(QUEUE) == 0


async def test_max_delivery_count_moves_the_message_to_the_dead_letter_queue(
    client: ServiceBusClient, peer: ServiceBusPeer
) -> None:
    peer.send(QUEUE, b"poison", message_id="p1")
    async with client.get_queue_receiver(QUEUE, **HANDLER) as receiver:
        for _ in range(3):  # max_delivery_count=3
            await receiver.abandon_message(await receive_one(receiver))
        assert await receiver.receive_messages(max_message_count=1, max_wait_time=0.5) == []
    [dead] = peer.dead_letters(QUEUE)
    assert (dead.message_id, dead.dead_letter_reason, dead.delivery_count) == (
        "p1",
        "MaxDeliveryCountExceeded",
        3,
    )


async def test_scheduled_messages_stay_invisible_until_due_and_cancel_works(
    client: ServiceBusClient, peer: ServiceBusPeer
) -> None:
    async with (
        client.get_queue_receiver(QUEUE, **HANDLER) as receiver,
        client.get_queue_sender(QUEUE, **HANDLER) as sender,
    ):
        await receiver.receive_messages(
            max_message_count=1, max_wait_time=0.1
        )  # attach before the clock starts
        await sender.send_messages(ServiceBusMessage(b"warm-up"))  # likewise
        await receiver.complete_message(await receive_one(receiver))
        due = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1.5)
        [kept, cancelled] = await sender.schedule_messages(
            [ServiceBusMessage(b"later", message_id="s1"), ServiceBusMessage(b"never", message_id="s2")], due
        )
        await sender.send_messages(
            ServiceBusMessage(b"annotated", message_id="s3", scheduled_enqueue_time_utc=due)
        )
        assert peer.scheduled_count(QUEUE) == 3
        await sender.cancel_scheduled_messages(cancelled)
        assert peer.scheduled_count(QUEUE) == 2
        assert kept < cancelled

        assert await receiver.receive_messages(max_message_count=2, max_wait_time=0.5) == []
        received = await receive_n(receiver, 2)
        assert sorted(str(m.message_id) for m in received) == ["s1", "s3"]
        enqueued = [m.enqueued_time_utc for m in received]
        assert all(t is not None and t >= due - dt.timedelta(milliseconds=1) for t in enqueued)
        for message in received:
            await receiver.complete_message(message)


async def test_unknown_entities_are_not_found_for_senders_and_receivers(client: ServiceBusClient) -> None:
    with pytest.raises(MessagingEntityNotFoundError):
        await send(client, "no-such-queue", ServiceBusMessage(b"lost"))
    with pytest.raises(MessagingEntityNotFoundError):
        async with client.get_queue_receiver("no-such-queue", **HANDLER) as receiver:
            await receiver.receive_messages(max_message_count=1, max_wait_time=0.5)


async def test_peek_shows_messages_without_locking_them(
    client: ServiceBusClient, peer: ServiceBusPeer
) -> None:
    for text in (b"p1", b"p2", b"p3"):
        peer.send(QUEUE, text)
    async with client.get_queue_receiver(QUEUE, **HANDLER) as receiver:
        peeked = await receiver.peek_messages(max_message_count=2)
        assert [body(m) for m in peeked] == [b"p1", b"p2"]
        rest = await receiver.peek_messages(max_message_count=5)  # continues after the last peeked
        assert [body(m) for m in rest] == [b"p3"]
        assert await receiver.peek_messages(max_message_count=5) == []
    assert [m.state for m in peer.messages(QUEUE)] == ["active"] * 3


async def test_topic_fans_out_to_each_subscription(client: ServiceBusClient, peer: ServiceBusPeer) -> None:
    async with client.get_topic_sender(TOPIC, **HANDLER) as sender:
        await sender.send_messages(ServiceBusMessage(b"customer.updated", message_id="t1"))
    for subscription in ("erp", "audit"):
        assert peer.active_count(f"{TOPIC}/Subscriptions/{subscription}") == 1
    async with client.get_subscription_receiver(TOPIC, "erp", **HANDLER) as erp:
        message = await receive_one(erp)
        assert (message.message_id, body(message)) == ("t1", b"customer.updated")
        await erp.complete_message(message)
    assert peer.active_count(f"{TOPIC}/Subscriptions/erp") == 0
    assert peer.active_count(f"{TOPIC}/Subscriptions/audit") == 1


async def test_deferred_messages_are_received_by_sequence_number(
    client: ServiceBusClient, peer: ServiceBusPeer
) -> None:
    peer.send(QUEUE, b"later please", message_id="f1")
    async with client.get_queue_receiver(QUEUE, **HANDLER) as receiver:
        message = await receive_one(receiver)
        await receiver.defer_message(message)
        assert peer.deferred_count(QUEUE) == 1
        assert await receiver.receive_messages(max_message_count=1, max_wait_time=0.3) == []
        assert message.sequence_number is not None
        [deferred] = await receiver.receive_deferred_messages([message.sequence_number])
        assert deferred.message_id == "f1"
        await receiver.complete_message(deferred)
    assert peer.messages(QUEUE) == []


async def test_receive_and_delete_removes_on_delivery(client: ServiceBusClient, peer: ServiceBusPeer) -> None:
    peer.send(QUEUE, b"fire and forget")
    async with client.get_queue_receiver(
        QUEUE, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE, **HANDLER
    ) as receiver:
        message = await receive_one(receiver)
        assert body(message) == b"fire and forget"
    assert peer.messages(QUEUE) == []


def test_the_sync_client_sends_settles_and_reads_the_dead_letter_queue(peer: ServiceBusPeer) -> None:
    with SyncServiceBusClient.from_connection_string(peer.connection_string, retry_total=0) as sb:
        with sb.get_queue_sender(QUEUE, **HANDLER) as sender:
            sender.send_messages(
                [ServiceBusMessage(b"s1", message_id="y1"), ServiceBusMessage(b"s2", message_id="y2")]
            )
        with sb.get_queue_receiver(QUEUE, **HANDLER) as receiver:
            first = receiver.receive_messages(max_message_count=1, max_wait_time=3)[0]
            receiver.abandon_message(first)
            again = receiver.receive_messages(max_message_count=1, max_wait_time=3)[0]
            assert (again.message_id, again.delivery_count) == ("y1", 1)
            receiver.dead_letter_message(again, reason="Rejected", error_description="by the ERP")
            second = receiver.receive_messages(max_message_count=1, max_wait_time=3)[0]
            receiver.complete_message(second)
        with sb.get_queue_receiver(QUEUE, sub_queue=ServiceBusSubQueue.DEAD_LETTER, **HANDLER) as dlq:
            letter = dlq.receive_messages(max_message_count=1, max_wait_time=3)[0]
            assert (letter.message_id, letter.dead_letter_reason) == ("y1", "Rejected")
            dlq.complete_message(letter)
    assert peer.messages(QUEUE) == [] and peer.dead_letters(QUEUE) == []


def test_a_burst_of_connections_waits_in_the_backlog_while_the_broker_is_busy(peer: ServiceBusPeer) -> None:
    """A worker accepting 32 sessions opens 32 connections at once. A listen backlog of 10 (proton's)
    dropped the rest, whose clients resent their SYN a second later, which Service Bus never does:
    here every connection is made while the broker is too busy to accept any."""
    stalled = threading.Thread(target=peer.stall, args=(1.5,))
    stalled.start()
    try:
        time.sleep(0.1)  # the broker's loop is stalled now
        sockets = [socket.create_connection(("127.0.0.1", peer.port), timeout=0.5) for _ in range(64)]
    finally:
        stalled.join()
    assert len(sockets) == 64
    for sock in sockets:
        sock.close()
