"""The Service Bus test peer through the real azure-servicebus SDK: message locks (renewed, expired
by time or by the peer), sessions (one receiver each, the next available one, an expired session
lock), and a dropped connection that takes its locks with it. The rest: ``test_servicebus_peer.py``.
"""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from azure.servicebus import NEXT_AVAILABLE_SESSION, ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient
from azure.servicebus.exceptions import (
    MessageLockLostError,
    OperationTimeoutError,
    SessionCannotBeLockedError,
    SessionLockLostError,
)

from tests.integration.servicebus_peer_rig import (
    HANDLER,
    LOCK_S,
    QUEUE,
    SESSIONS,
    SHORT_SESSIONS,
    SLOW_LOCKS,
    client,
    peer,
    receive_one,
    send,
)
from tests.servicebus_peer import ServiceBusPeer

__all__ = ["client", "peer"]  # the fixtures: a peer of its own for each test, and an SDK client


async def test_renewing_a_lock_extends_locked_until(client: ServiceBusClient, peer: ServiceBusPeer) -> None:
    peer.send(SLOW_LOCKS, b"slow work")
    async with client.get_queue_receiver(SLOW_LOCKS, **HANDLER) as receiver:
        message = await receive_one(receiver)
        first_lock_ends = message.locked_until_utc
        assert first_lock_ends is not None
        await asyncio.sleep(0.5)
        renewed = await receiver.renew_message_lock(message)
        assert renewed > first_lock_ends
        # Past the first lock's end; the renewed one (taken 0.5 s or more later) still holds.
        await asyncio.sleep((first_lock_ends - dt.datetime.now(dt.UTC)).total_seconds() + 0.2)
        await receiver.complete_message(message)
    assert peer.messages(SLOW_LOCKS) == []


async def test_lock_expiry_redelivers_and_the_stale_settlement_fails(
    client: ServiceBusClient, peer: ServiceBusPeer
) -> None:
    peer.send(QUEUE, b"too slow", message_id="e1")
    async with client.get_queue_receiver(QUEUE, **HANDLER) as receiver:
        stale = await receive_one(receiver)
        await asyncio.sleep(LOCK_S + 0.3)
        again = await receive_one(receiver)
        assert (again.message_id, again.delivery_count) == ("e1", 1)
        with pytest.raises(MessageLockLostError):
            await receiver.complete_message(stale)
        await receiver.complete_message(again)


async def test_a_lock_the_peer_expires_early_fails_settlement_on_the_wire(
    client: ServiceBusClient, peer: ServiceBusPeer
) -> None:
    peer.send(QUEUE, b"x", message_id="e2")
    async with client.get_queue_receiver(QUEUE, **HANDLER) as receiver:
        stale = await receive_one(receiver)
        assert peer.expire_lock(QUEUE, message_id="e2") == 1
        # The SDK still believes the lock holds, so this goes to the peer and comes back lock-lost.
        with pytest.raises(MessageLockLostError):
            await receiver.complete_message(stale)
        again = await receive_one(receiver)
        assert peer.expire_lock(QUEUE) == 1
        with pytest.raises(MessageLockLostError):
            await receiver.renew_message_lock(again)
    assert [m.delivery_count for m in peer.messages(QUEUE)] == [2]


async def test_sessions_one_receiver_each_in_order(client: ServiceBusClient) -> None:
    interleaved = [
        ServiceBusMessage(f"{s}-{i}", session_id=s) for i in range(3) for s in ("client-a", "client-b")
    ]
    await send(client, SESSIONS, *interleaved)
    async with (
        client.get_queue_receiver(SESSIONS, session_id="client-a", **HANDLER) as a,
        client.get_queue_receiver(SESSIONS, session_id="client-b", **HANDLER) as b,
    ):
        seen_a = [await receive_one(a) for _ in range(3)]
        seen_b = [await receive_one(b) for _ in range(3)]
        assert [str(m) for m in seen_a] == ["client-a-0", "client-a-1", "client-a-2"]
        assert [str(m) for m in seen_b] == ["client-b-0", "client-b-1", "client-b-2"]
        assert a.session.session_id == "client-a"
        with pytest.raises(SessionCannotBeLockedError):
            async with client.get_queue_receiver(SESSIONS, session_id="client-a", **HANDLER) as intruder:
                await intruder.receive_messages(max_message_count=1, max_wait_time=0.5)
        for message in seen_a:
            await a.complete_message(message)
        for message in seen_b:
            await b.complete_message(message)


async def test_next_available_session_picks_a_free_session(
    client: ServiceBusClient, peer: ServiceBusPeer
) -> None:
    peer.send(SESSIONS, b"a", session_id="s-1")
    peer.send(SESSIONS, b"b", session_id="s-2")
    async with client.get_queue_receiver(
        SESSIONS, session_id=NEXT_AVAILABLE_SESSION, max_wait_time=2, **HANDLER
    ) as one:
        message_one = await receive_one(one)
        async with client.get_queue_receiver(
            SESSIONS, session_id=NEXT_AVAILABLE_SESSION, max_wait_time=2, **HANDLER
        ) as two:
            message_two = await receive_one(two)
            assert {one.session.session_id, two.session.session_id} == {"s-1", "s-2"}
            assert message_two.session_id == two.session.session_id
            await two.complete_message(message_two)
        assert message_one.session_id == one.session.session_id
        await one.session.set_state(b"checkpoint")
        assert await one.session.get_state() == b"checkpoint"
        before = one.session.locked_until_utc
        assert before is not None
        assert await one.session.renew_lock() >= before
        await one.complete_message(message_one)


async def test_an_expired_session_lock_fails_settlement_and_frees_the_session(
    client: ServiceBusClient, peer: ServiceBusPeer
) -> None:
    peer.send(SHORT_SESSIONS, b"slow", session_id="s-1", message_id="x1")
    async with client.get_queue_receiver(SHORT_SESSIONS, session_id="s-1", **HANDLER) as receiver:
        message = await receive_one(receiver)
        await asyncio.sleep(LOCK_S + 0.3)
        with pytest.raises(SessionLockLostError):
            await receiver.complete_message(message)
    assert [(m.message_id, m.delivery_count, m.state) for m in peer.messages(SHORT_SESSIONS)] == [
        ("x1", 1, "active")
    ]


async def test_next_available_session_times_out_when_no_session_has_messages(
    client: ServiceBusClient,
) -> None:
    with pytest.raises(OperationTimeoutError):
        async with client.get_queue_receiver(
            SESSIONS, session_id=NEXT_AVAILABLE_SESSION, max_wait_time=0.5, **HANDLER
        ) as receiver:
            await receiver.receive_messages(max_message_count=1, max_wait_time=0.5)


async def test_dropped_connection_loses_the_lock_and_the_message_comes_back(
    peer: ServiceBusPeer,
) -> None:
    # Retries on: the SDK must reconnect by itself after the connection drops.
    async with ServiceBusClient.from_connection_string(peer.connection_string, retry_total=3) as sb:
        peer.send(QUEUE, b"in flight", message_id="c1")
        async with sb.get_queue_receiver(QUEUE, **HANDLER) as receiver:
            held = await receive_one(receiver)
            assert peer.drop_connections() >= 1
            assert peer.messages(QUEUE)[0].delivery_count == 1  # the lock went with the connection
            again = await receive_one(receiver, wait_s=5)
            assert (again.message_id, again.delivery_count) == ("c1", 1)
            with pytest.raises(MessageLockLostError):
                await receiver.complete_message(held)
            await receiver.complete_message(again)
    assert peer.active_count(QUEUE) == 0
