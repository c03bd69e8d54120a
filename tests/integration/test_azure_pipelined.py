"""Completing a batch with its dispositions sent together (worker/buses/azure/pipelined.py), through
the real SDK against the test peer: every message completed without the SDK's one-by-one call, a
lost lock failing only its own message with the SDK's own error, an echo that does not come
reported as unconfirmed, and the public call wherever the SDK lacks what pipelining needs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from azure.servicebus import ServiceBusMessage, ServiceBusReceivedMessage
from azure.servicebus.aio import ServiceBusClient, ServiceBusReceiver
from azure.servicebus.exceptions import MessageLockLostError, ServiceBusError

from tests.integration.servicebus_peer_rig import HANDLER, LONG_LOCKS, QUEUE, client, peer, send
from tests.servicebus_peer import ServiceBusPeer
from worker.buses.azure import pipelined

__all__ = ["client", "peer"]  # the fixtures


class Counted:
    """The receiver's public ``complete_message``, counted: the pipelined path must not call it."""

    def __init__(self, receiver: ServiceBusReceiver) -> None:
        self.calls = 0
        self._complete = receiver.complete_message

    async def __call__(self, message: ServiceBusReceivedMessage) -> None:
        self.calls += 1
        await self._complete(message)


@pytest.fixture
async def receiver(client: ServiceBusClient) -> AsyncIterator[ServiceBusReceiver]:
    async with client.get_queue_receiver(QUEUE, prefetch_count=20, **HANDLER) as opened:
        yield opened


async def _batch(
    client: ServiceBusClient, receiver: ServiceBusReceiver, n: int
) -> list[ServiceBusReceivedMessage]:
    await send(client, QUEUE, [ServiceBusMessage(f'{{"n": {i}}}', message_id=f"m{i}") for i in range(n)])
    got: list[ServiceBusReceivedMessage] = []
    async with asyncio.timeout(10):
        while len(got) < n:
            got += await receiver.receive_messages(max_message_count=n - len(got), max_wait_time=1)
    return got


def _counted(receiver: ServiceBusReceiver, monkeypatch: pytest.MonkeyPatch) -> Counted:
    counted = Counted(receiver)
    monkeypatch.setattr(receiver, "complete_message", counted)
    return counted


async def test_a_batch_is_completed_together_without_the_one_by_one_call(
    peer: ServiceBusPeer,
    client: ServiceBusClient,
    receiver: ServiceBusReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    got = await _batch(client, receiver, 10)
    counted = _counted(receiver, monkeypatch)

    outcomes = await pipelined.complete_all(receiver, got)

    assert outcomes == [None] * 10
    assert counted.calls == 0, "the batch went through complete_message one by one"
    assert peer.messages(QUEUE) == []
    assert all(m._settled for m in got)  # as complete_message leaves them
    with pytest.raises(ValueError, match="already settled"):
        await receiver.complete_message(got[0])  # the SDK knows they are settled


async def test_a_lost_lock_fails_only_its_message_with_the_sdks_own_error(
    peer: ServiceBusPeer, client: ServiceBusClient, receiver: ServiceBusReceiver
) -> None:
    got = await _batch(client, receiver, 6)
    assert peer.expire_lock(QUEUE, message_id=got[3].message_id) == 1

    outcomes = await pipelined.complete_all(receiver, got)

    assert [type(o) for o in outcomes] == [type(None)] * 3 + [MessageLockLostError] + [type(None)] * 2
    assert [s.message_id for s in peer.messages(QUEUE)] == [got[3].message_id]  # back in the queue


async def test_echoes_that_do_not_come_are_unconfirmed(
    peer: ServiceBusPeer, client: ServiceBusClient, receiver: ServiceBusReceiver
) -> None:
    got = await _batch(client, receiver, 4)
    config: Any = receiver._config
    config.timeout = 0.3  # the SDK's operation timeout, which the wait for echoes keeps
    stalled = asyncio.create_task(asyncio.to_thread(peer.stall, 1.5))
    await asyncio.sleep(0.1)

    outcomes = await pipelined.complete_all(receiver, got)
    await stalled

    assert all(isinstance(o, ServiceBusError) and "not confirmed" in str(o) for o in outcomes), outcomes
    handler: Any = receiver._handler
    assert handler._link._pending_dispositions == {}  # nothing left behind in the SDK


@pytest.mark.parametrize("why", ["one message", "an SDK that settles without an echo"])
async def test_without_what_pipelining_needs_each_goes_through_the_public_call(
    peer: ServiceBusPeer,
    client: ServiceBusClient,
    receiver: ServiceBusReceiver,
    monkeypatch: pytest.MonkeyPatch,
    why: str,
) -> None:
    got = await _batch(client, receiver, 1 if why == "one message" else 3)
    if why != "one message":
        monkeypatch.setattr(receiver, "_await_settlement_outcome", False)
    counted = _counted(receiver, monkeypatch)

    outcomes = await pipelined.complete_all(receiver, got)

    assert outcomes == [None] * len(got)
    assert counted.calls == len(got)
    async with asyncio.timeout(5):  # settled without an echo: the peer applies it a moment later
        while peer.messages(QUEUE):
            await asyncio.sleep(0.02)


async def test_a_receive_between_sending_and_confirming_reads_the_echoes(
    peer: ServiceBusPeer, client: ServiceBusClient, receiver: ServiceBusReceiver
) -> None:
    """What the pump relies on (worker/buses/azure/receiving.py): its next receive files the echoes
    of the completions it sent, so confirming them reads nothing more."""
    got = await _batch(client, receiver, 6)
    sent = await pipelined.send_all(receiver, got)
    handler: Any = receiver._handler
    pending = handler._link._pending_dispositions
    assert len(sent.sent) == 6
    assert not any(pending[m._delivery_id]["settled"] for m in got)  # nothing has read an echo yet

    await send(client, QUEUE, [ServiceBusMessage('{"n": 6}', message_id="m6")])
    async with asyncio.timeout(10):
        more = await receiver.receive_messages(max_message_count=1, max_wait_time=5)
    assert [m.message_id for m in more] == ["m6"]
    assert all(pending[m._delivery_id]["settled"] for m in got), "the receive did not read the echoes"
    reads = 0
    listen = handler._link._session._connection.listen

    async def counted_listen(*args: Any, **kwargs: Any) -> Any:
        nonlocal reads
        reads += 1
        return await listen(*args, **kwargs)

    handler._link._session._connection.listen = counted_listen

    assert await sent.confirm() == [None] * 6
    assert reads == 0
    assert pending == {}
    assert [m.message_id for m in peer.messages(QUEUE)] == ["m6"]


async def test_messages_from_before_a_reconnect_fail_alone_and_the_new_link_stays_up(
    peer: ServiceBusPeer, client: ServiceBusClient
) -> None:
    """The receiver reconnected (the connection dropped) while it held messages: their link is gone,
    and the new one refuses their delivery tags. The SDK's own call then settles through
    $management; so must a batch. Found as a worker test that dead-lettered processed messages: the
    refusal shut the new link down, every message received on it failed the same way, and so on
    until each had used up its deliveries."""
    await send(client, LONG_LOCKS, [ServiceBusMessage(f"m{i}", message_id=f"m{i}") for i in range(4)])
    async with client.get_queue_receiver(LONG_LOCKS, **HANDLER) as receiver:
        old = await _receive(receiver, 4)
        assert peer.drop_connections() > 0
        new = await _receive(receiver, 4)  # the same messages again: the drop cost their locks
        assert sorted(str(m.message_id) for m in new) == ["m0", "m1", "m2", "m3"]

        stale = await pipelined.complete_all(receiver, old)

        assert all(isinstance(o, MessageLockLostError) for o in stale), stale
        assert await pipelined.complete_all(receiver, new) == [None] * 4
        assert peer.messages(LONG_LOCKS) == []


async def _receive(receiver: ServiceBusReceiver, n: int) -> list[ServiceBusReceivedMessage]:
    """``n`` messages, through the reconnect a dropped connection costs (no retries in ``client``)."""
    got: list[ServiceBusReceivedMessage] = []
    async with asyncio.timeout(15):
        while len(got) < n:
            with contextlib.suppress(ServiceBusError):
                got += await receiver.receive_messages(max_message_count=n - len(got), max_wait_time=1)
    return got
