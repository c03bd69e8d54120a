"""The Service Bus adapter's settler (worker/buses/azure/settling.py) through the real SDK against the
test peer: settlements queued by many tasks while a receive waits are all applied, a batch's lost
lock fails only its own message (whose redelivery comes back), mixed outcomes keep their meaning,
closing the bus finishes what was queued, and what a receive fetched after its caller gave up is
settled without waiting out the idle poll."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from azure.servicebus.aio import ServiceBusReceiver

from tests.integration.buses import LOCK_S, QUEUE, azure_bus, peer_entities
from tests.servicebus_peer import ServiceBusPeer
from worker.buses.azure import AzureBus, pipelined
from worker.buses.azure.receiving import QueueReceiving
from worker.buses.base import Delivery, LockLostError


@pytest.fixture
async def bus(peer: ServiceBusPeer) -> AsyncIterator[AzureBus]:
    adapter = azure_bus(peer.connection_string, QUEUE, sessions=False, lock_s=LOCK_S)
    await adapter.open()
    try:
        yield adapter
    finally:
        await adapter.close()


def _send(peer: ServiceBusPeer, n: int) -> None:
    for i in range(n):
        peer.send(QUEUE, f'{{"n": {i}}}', message_id=f"m{i}")


async def _receive(bus: AzureBus, n: int) -> list[Delivery]:
    got: list[Delivery] = []
    async with asyncio.timeout(20):
        while len(got) < n:
            got += await bus.receive(n - len(got), 1.0)
    return got


async def test_completions_queued_by_many_tasks_while_a_receive_waits_are_all_applied(
    peer: ServiceBusPeer, bus: AzureBus
) -> None:
    _send(peer, 12)
    got = await _receive(bus, 12)
    waiting = asyncio.create_task(bus.receive(5, 2.0))  # the queue is empty: the pump's receive waits
    await asyncio.sleep(0.05)
    await asyncio.gather(*(bus.complete(d) for d in got))
    assert await waiting == []
    assert peer.active_count(QUEUE) == 0
    assert peer.messages(QUEUE) == []


async def test_a_lost_lock_in_a_batch_fails_only_its_message_and_it_comes_back(
    peer: ServiceBusPeer, bus: AzureBus
) -> None:
    _send(peer, 6)
    got = await _receive(bus, 6)
    lost = got[2]
    assert peer.expire_lock(QUEUE, message_id=lost.message_id) == 1
    results = await asyncio.gather(*(bus.complete(d) for d in got), return_exceptions=True)
    failed = [d.message_id for d, r in zip(got, results, strict=True) if isinstance(r, BaseException)]
    assert failed == [lost.message_id]
    assert isinstance(results[2], LockLostError)
    again = await _receive(bus, 1)
    assert [d.message_id for d in again] == [lost.message_id]
    assert again[0].delivery_count >= 1
    await bus.complete(again[0])
    assert peer.messages(QUEUE) == []


async def test_mixed_outcomes_queued_together_keep_their_meaning(peer: ServiceBusPeer, bus: AzureBus) -> None:
    _send(peer, 5)
    got = await _receive(bus, 5)
    by_id = {d.message_id: d for d in got}
    await asyncio.gather(
        bus.complete(by_id["m0"]),
        bus.abandon(by_id["m1"]),
        bus.complete(by_id["m2"]),
        bus.dead_letter(by_id["m3"], "ValidationFailed", "bad field"),
        bus.complete(by_id["m4"]),
    )
    assert peer.dead_letter_count(QUEUE) == 1
    [letter] = await bus.dead_letters()
    assert (letter.message_id, letter.reason) == ("m3", "ValidationFailed")
    again = await _receive(bus, 1)
    assert [d.message_id for d in again] == ["m1"]
    await bus.complete(again[0])
    assert peer.active_count(QUEUE) == 0


async def test_closing_the_bus_finishes_the_queued_settlements(peer: ServiceBusPeer) -> None:
    _send(peer, 8)
    bus = azure_bus(peer.connection_string, QUEUE, sessions=False, lock_s=LOCK_S)
    await bus.open()
    got = await _receive(bus, 8)
    completing = [asyncio.create_task(bus.complete(d)) for d in got]
    await asyncio.sleep(0)  # queued, not yet settled
    await bus.close()
    await asyncio.gather(*completing)
    assert peer.messages(QUEUE) == []


async def test_what_came_while_its_caller_gave_up_settles_without_waiting_out_the_idle_poll() -> None:
    """A worker with nothing in flight asks with the idle poll's long wait (here 30 s) and gives up
    before messages come; they arrive during that receive, are handed out from the buffer, and
    their completions go at once, not after another 30-s receive started for the stale request
    (locks of a minute here, so that no lock runs out and ends that receive early)."""
    with ServiceBusPeer(entities=peer_entities(lock_s=60.0)) as peer:
        bus = azure_bus(peer.connection_string, QUEUE, sessions=False, lock_s=60.0, poll_s=30.0)
        await bus.open()
        try:
            assert await bus.receive(32, 0.01) == []  # the queue is empty: the caller gives up
            _send(peer, 5)
            await asyncio.sleep(1.0)  # the receive that caller started fetches them meanwhile
            got: list[Delivery] = []
            async with asyncio.timeout(10):
                while len(got) < 5:
                    got += await bus.receive(32 - len(got), 0.0)  # work in flight from here on
                    await asyncio.sleep(0.02)
            async with asyncio.timeout(10):  # a third of the idle poll: these never wait for it
                await asyncio.gather(*(bus.complete(d) for d in got))
            assert peer.active_count(QUEUE) == 0
        finally:
            await bus.close()


@pytest.mark.parametrize(
    ("wait_s", "expected"),
    [(0.0, ["send", "receive", "confirm"]), (2.0, ["send", "confirm", "receive"])],
    ids=["short receive", "idle poll"],
)
async def test_a_pumps_completions_are_confirmed_after_a_short_receive_it_was_asked_for(
    peer: ServiceBusPeer, bus: AzureBus, monkeypatch: pytest.MonkeyPatch, wait_s: float, expected: list[str]
) -> None:
    """Completions queued while a short receive is wanted (work in flight) go out first, that
    receive follows at once (it reads their echoes), and they are confirmed after it: one round
    trip a cycle, not two. Before an idle poll's long wait they are confirmed first."""
    _send(peer, 8)
    got = await _receive(bus, 4)
    order: list[str] = []
    send_all, confirm, fetch = pipelined.send_all, pipelined.Sent.confirm, QueueReceiving._fetch

    async def sending(*args: Any) -> pipelined.Sent:
        order.append("send")
        return await send_all(*args)

    async def confirming(self: pipelined.Sent) -> list[pipelined.Outcome]:
        order.append("confirm")
        return await confirm(self)

    async def fetching(self: QueueReceiving, max_count: int, wait: float) -> Any:
        order.append("receive")
        return await fetch(self, max_count, wait)

    monkeypatch.setattr(pipelined, "send_all", sending)
    monkeypatch.setattr(pipelined.Sent, "confirm", confirming)
    monkeypatch.setattr(QueueReceiving, "_fetch", fetching)
    completing = [asyncio.create_task(bus.complete(d)) for d in got]
    asking = asyncio.create_task(bus.receive(4, wait_s))  # 0: work in flight, a short receive

    await asyncio.gather(*completing)
    more = await asking + await _receive(bus, 4 - len(await asking))

    assert order[:3] == expected
    assert len(more) == 4
    assert peer.active_count(QUEUE) == 4  # the four completed are gone, the next four are out


async def test_a_short_receive_stays_short_when_a_poll_is_asked_for_as_it_starts(
    peer: ServiceBusPeer, bus: AzureBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pump decides on a short receive (work in flight), sends the batch's completions, and a
    caller's idle poll is asked for just as that receive starts: the receive keeps the short wait,
    so the batch's outcomes are not held for a poll."""
    _send(peer, 8)
    got = await _receive(bus, 4)
    waits: list[float] = []
    fetch_into_buffer = QueueReceiving._fetch_into_buffer
    receive_messages = ServiceBusReceiver.receive_messages

    async def asked_for_a_poll_meanwhile(self: QueueReceiving, max_count: int, wait: float) -> None:
        self._wait = self._poll_s  # what take(wait_s > 0) sets, arriving as the fetch starts
        await fetch_into_buffer(self, max_count, wait)

    async def recording(self: ServiceBusReceiver, *args: Any, **kwargs: Any) -> Any:
        waits.append(kwargs["max_wait_time"])
        return await receive_messages(self, *args, **kwargs)

    monkeypatch.setattr(QueueReceiving, "_fetch_into_buffer", asked_for_a_poll_meanwhile)
    monkeypatch.setattr(ServiceBusReceiver, "receive_messages", recording)
    completing = [asyncio.create_task(bus.complete(d)) for d in got]
    asking = asyncio.create_task(bus.receive(4, 0.0))  # work in flight: a short receive

    async with asyncio.timeout(20):  # a guard against a hang, not a time limit: the waits tell
        await asyncio.gather(*completing)
        await asking
    assert waits and max(waits) < 0.1
    assert peer.active_count(QUEUE) <= 4  # the four completed are gone
