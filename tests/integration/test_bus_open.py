"""A worker connects its bus when it starts, not at its first receive: bad credentials or a missing
entity show at once, and the first message does not wait for the SDK's link to open (about half a
second: it polls for the link every 50 ms). Opening waits out a namespace that is not up yet, as
receiving does, and gives up at once on what no retry mends."""

from __future__ import annotations

import asyncio

import pytest
from azure.servicebus.exceptions import ServiceBusError

from config_db.database import make_engine
from tests.integration.buses import LOCK_S, QUEUE, SESSION_QUEUE, azure_bus
from tests.servicebus_peer import ServiceBusPeer
from worker.buses.azure.client import POLL_S, SDK_POLL_S
from worker.buses.base import Delivery
from worker.buses.local import LocalBus
from worker.db import Database
from worker.messaging.outcomes import Outcome
from worker.messaging.runner import Worker


class RecordingBus(LocalBus):
    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.calls: list[str] = []

    async def open(self) -> None:
        self.calls.append("open")
        await super().open()

    async def receive(self, max_count: int, wait_s: float) -> list[Delivery]:
        self.calls.append("receive")
        return await super().receive(max_count, wait_s)


class NoWork:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def handle(self, delivery: Delivery) -> Outcome:
        raise AssertionError(f"nothing was published, yet {delivery.message_id} arrived")


async def test_the_worker_opens_its_bus_once_before_it_receives(sqlite_url: str) -> None:
    db = Database(make_engine(sqlite_url))
    bus = RecordingBus(db)
    try:
        stats = await Worker(bus, NoWork(db), concurrency=2).run(until_idle=True)
    finally:
        await db.close()
    assert stats.processed == 0
    assert bus.calls[0] == "open"
    assert bus.calls.count("open") == 1
    assert "receive" in bus.calls


async def test_opening_waits_for_a_namespace_that_comes_up(peer: ServiceBusPeer) -> None:
    # Each test has a peer of its own (the ``peer`` fixture): taking it offline disturbs no other.
    await asyncio.to_thread(peer.go_offline)
    bus = azure_bus(peer.connection_string, QUEUE, sessions=False, lock_s=LOCK_S)
    try:
        opening = asyncio.create_task(bus.open())
        await asyncio.sleep(1.5)
        assert not opening.done(), "an unreachable namespace is retried, not a failed start"
        await asyncio.to_thread(peer.come_back)
        await asyncio.wait_for(opening, 60)
        peer.send(QUEUE, '{"n": 1}', message_id="after-the-outage")
        got = await bus.receive(1, 10.0)
        assert [d.message_id for d in got] == ["after-the-outage"]
        await bus.complete(got[0])
    finally:
        await bus.close()


async def test_opening_a_missing_entity_fails_at_once(peer: ServiceBusPeer) -> None:
    bus = azure_bus(peer.connection_string, "no-such-queue", sessions=False, lock_s=LOCK_S)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        with pytest.raises(ServiceBusError) as raised:
            await asyncio.wait_for(bus.open(), 60)
    finally:
        await bus.close()
    failure = str(raised.value)
    assert "no-such-queue" in failure or "not found" in failure.lower()
    assert loop.time() - started < 30, "not retried as if the namespace were unreachable"


async def test_a_stop_while_the_namespace_is_unreachable_ends_the_worker_at_once(
    sqlite_url: str, peer: ServiceBusPeer
) -> None:
    await asyncio.to_thread(peer.go_offline)
    db = Database(make_engine(sqlite_url))
    bus = azure_bus(peer.connection_string, QUEUE, sessions=False, lock_s=LOCK_S)
    worker = Worker(bus, NoWork(db), concurrency=2)
    try:
        running = asyncio.create_task(worker.run())
        await asyncio.sleep(1.0)
        assert not running.done(), "an unreachable namespace is retried at start"
        worker.stop()  # as SIGTERM does
        stats = await asyncio.wait_for(running, 10)
        assert stats.processed == 0
    finally:
        await bus.close()
        await db.close()


async def test_an_accepted_sessions_link_is_checked_every_millisecond_not_every_fifty(
    peer: ServiceBusPeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every accepted session opens a receiver of its own; the SDK naps 50 ms between the checks of
    # its link (nine of them against this peer), which the client shortens (worker/buses/azure/client.py).
    naps: list[float] = []
    real_sleep = asyncio.sleep

    async def recording(delay: float, result: object = None) -> object:
        naps.append(delay)
        return await real_sleep(delay, result)

    monkeypatch.setattr(asyncio, "sleep", recording)
    peer.send(SESSION_QUEUE, '{"n": 1}', message_id="in-a-session", session_id="acme")
    bus = azure_bus(peer.connection_string, SESSION_QUEUE, sessions=True, lock_s=LOCK_S)
    try:
        await asyncio.wait_for(bus.open(), 30)
        got = await bus.receive(1, 10.0)
        assert [(d.message_id, d.session_id) for d in got] == [("in-a-session", "acme")]
        await bus.complete(got[0])
    finally:
        await bus.close()
    assert POLL_S in naps, "the link's checks did not go through the shortened nap"
    assert SDK_POLL_S not in naps
