"""Several receivers on one queue (``CWI_SERVICEBUS_RECEIVERS``): what they receive is handed out
once, each message settles through the receiver it came from, an idle take waits for the next
message, and the prefetch is split between them. Against the Service Bus test peer, through the SDK."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from tests.integration.buses import LOCK_S, QUEUE, azure_bus
from tests.servicebus_peer import ServiceBusPeer
from worker.buses.azure.fan import FannedReceiving, receivers
from worker.buses.azure.receiving import Lock, QueueReceiving
from worker.buses.base import Delivery, LockLostError


async def _drain(bus_receive: Callable[[int, float], Awaitable[list[Delivery]]], want: int) -> list[Delivery]:
    got: list[Delivery] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while len(got) < want and loop.time() < deadline:
        got += await bus_receive(8, 1.0)
    return got


async def test_every_message_is_completed_once_through_the_receiver_that_handed_it_out(
    peer: ServiceBusPeer,
) -> None:
    for n in range(40):
        peer.send(QUEUE, f'{{"n": {n}}}', message_id=f"m{n}")
    bus = azure_bus(peer.connection_string, QUEUE, sessions=False, lock_s=LOCK_S, receivers=3, prefetch=12)
    completed: list[str] = []
    vias: set[int] = set()
    try:
        await asyncio.wait_for(bus.open(), 30)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while len(completed) < 40 and loop.time() < deadline:
            for delivery in await bus.receive(8, 1.0):
                assert isinstance(delivery.lock, Lock)
                vias.add(id(delivery.lock.via))
                try:
                    await bus.complete(delivery)
                except LockLostError:
                    continue  # held past its (2-s) lock on a busy machine: it comes again
                completed.append(delivery.message_id)
    finally:
        await bus.close()
    assert sorted(completed) == sorted(f"m{n}" for n in range(40)), "each message completed exactly once"
    assert len(vias) > 1, "only one of the three receivers handed anything out"
    assert peer.active_count(QUEUE) == 0
    assert not peer.dead_letters(QUEUE)


async def test_a_dropped_network_settles_nothing_twice_and_every_receiver_recovers(
    peer: ServiceBusPeer,
) -> None:
    # The trade-off of several receivers (fan.py): the drop may hand a message to another receiver
    # of ours that is going down too, so its delivery count can rise by more than one, up to the
    # queue's MaxDeliveryCount (3 here). Each message still ends exactly once: completed once, or
    # dead-lettered for its count.
    everything = {f"m{n}" for n in range(6)}
    for message_id in sorted(everything):
        peer.send(QUEUE, "{}", message_id=message_id)
    bus = azure_bus(peer.connection_string, QUEUE, sessions=False, lock_s=LOCK_S, receivers=3, prefetch=12)
    completed: set[str] = set()

    async def complete(delivery: Delivery) -> None:
        try:
            await bus.complete(delivery)
        except LockLostError:
            return  # its lock went with the connection: it comes again (or is dead-lettered)
        assert delivery.message_id not in completed, f"{delivery.message_id} completed twice"
        completed.add(delivery.message_id)

    def dead() -> set[str]:
        letters = peer.dead_letters(QUEUE)
        assert {letter.dead_letter_reason for letter in letters} <= {"MaxDeliveryCountExceeded"}
        return {letter.message_id for letter in letters}

    try:
        await asyncio.wait_for(bus.open(), 30)
        got = await _drain(bus.receive, 6)
        assert {d.message_id for d in got} == everything
        await complete(got[0])
        peer.drop_connections()
        await asyncio.gather(*(complete(d) for d in got[1:]))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while everything - completed - dead() and loop.time() < deadline:
            for delivery in await bus.receive(8, 1.0):
                await complete(delivery)
        assert not completed & dead()
        assert completed | dead() == everything
        peer.send(QUEUE, "{}", message_id="after")
        [after] = await _drain(bus.receive, 1)
        await bus.complete(after)
    finally:
        await bus.close()
    assert peer.active_count(QUEUE) == 0


async def test_an_idle_take_waits_for_the_next_message_on_any_receiver(peer: ServiceBusPeer) -> None:
    bus = azure_bus(peer.connection_string, QUEUE, sessions=False, lock_s=LOCK_S, receivers=3, prefetch=6)
    try:
        await asyncio.wait_for(bus.open(), 30)
        assert await bus.receive(4, 0.3) == []
        waiting = asyncio.create_task(bus.receive(4, 10.0))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        peer.send(QUEUE, '{"n": 1}', message_id="late")
        got = await asyncio.wait_for(waiting, 10)
        assert [d.message_id for d in got] == ["late"]
        await bus.abandon(got[0])
        again = await _drain(bus.receive, 1)
        assert [d.message_id for d in again] == ["late"]
        await bus.complete(again[0])
    finally:
        await bus.close()
    assert peer.active_count(QUEUE) == 0


@pytest.mark.parametrize(
    ("count", "prefetch", "shares"),
    [(1, 16, [16]), (4, 16, [4, 4, 4, 4]), (3, 10, [4, 3, 3]), (4, 2, [1, 1])],
)
def test_the_prefetch_is_split_between_at_most_as_many_receivers(
    count: int, prefetch: int, shares: list[int]
) -> None:
    opened: list[int] = []

    def open_receiver(prefetch_count: int = 0) -> object:
        opened.append(prefetch_count)
        return object()

    made = receivers(open_receiver, count=count, prefetch=prefetch, poll_s=1.0, reconnect_s=1.0)  # type: ignore[arg-type]
    parts = made._parts if isinstance(made, FannedReceiving) else [made]
    assert isinstance(made, FannedReceiving) == (len(shares) > 1)
    assert all(isinstance(part, QueueReceiving) for part in parts)
    for part in parts:
        assert isinstance(part, QueueReceiving)
        part._open_receiver()
    assert opened == shares


class _Part:
    def __init__(self, ready: list[str] | None = None) -> None:
        self.calls: list[tuple[str, str | None]] = []
        self.ready = ready or []

    def held(self, max_count: int) -> list[Lock]:
        return []

    async def take(self, max_count: int, wait_s: float) -> list[Lock]:
        out, self.ready = self.ready[:max_count], self.ready[max_count:]
        return [Lock(receiver=object(), message=_Message(m), via=self) for m in out]  # type: ignore[arg-type]

    def give_back(self, lock: Lock) -> None:
        self.calls.append(("given back", lock.message.message_id))

    async def settle(self, lock: Lock, action: object) -> None:
        self.calls.append(("settle", lock.message.message_id))

    async def renew(self, lock: Lock) -> None:
        self.calls.append(("renew", lock.message.message_id))

    def settled(self, lock: Lock, *, lost: bool) -> None:
        self.calls.append(("settled", lock.message.message_id))


class _Message:
    def __init__(self, message_id: str) -> None:
        self.message_id = message_id


async def test_a_message_settles_on_the_pump_of_the_receiver_that_handed_it_out() -> None:
    # The pump of that receiver: it never settles while its own receive waits (``settling``).
    first, second = _Part(), _Part()
    fan = FannedReceiving([first, second])  # type: ignore[list-item]
    a = Lock(receiver=object(), message=_Message("a"), via=first)  # type: ignore[arg-type]
    b = Lock(receiver=object(), message=_Message("b"), via=second)  # type: ignore[arg-type]
    await fan.settle(b, None)
    await fan.renew(a)
    fan.settled(b, lost=False)
    assert first.calls == [("renew", "a")]
    assert second.calls == [("settle", "b"), ("settled", "b")]
    with pytest.raises(TypeError, match="not received by a receiver of this fan"):
        await fan.settle(Lock(receiver=object(), message=_Message("c")), None)  # type: ignore[arg-type]


async def test_no_more_than_asked_for_when_several_receivers_answer_at_once() -> None:
    first, second = _Part(["a1", "a2"]), _Part(["b1", "b2"])
    fan = FannedReceiving([first, second])  # type: ignore[list-item]
    got = await fan.take(3, 1.0)
    assert len(got) == 3
    returned = [c for part in (first, second) for c in part.calls if c[0] == "given back"]
    assert len(returned) == 1
    [(_, message_id)] = returned
    assert message_id is not None
    assert message_id not in {lock.message.message_id for lock in got}
    owner = first if message_id.startswith("a") else second
    assert ("given back", message_id) in owner.calls, "given back to another receiver than its own"
