"""A bus tells the worker when messages arrive that its last receive did not find, and the worker
receives them then, not when one of its messages finishes. With work in flight the worker's receive
does not wait: on Service Bus the receive it started (a queue's fetch, a session's accept or next
message) then lands while the worker waits for a slot. Waiting for the next message to finish
left a session accepted at start idle for the length of an ERP call: at 100 ms with 64 in flight
over 128 sessions, half of the first second's slots were empty (docs/performance.md)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from config_db.database import make_engine
from tests.integration.buses import LOCK_S, QUEUE, SESSION_QUEUE, azure_bus
from tests.servicebus_peer import ServiceBusPeer
from worker.buses.base import Delivery, OutgoingMessage
from worker.buses.local import LocalBus
from worker.db import Database
from worker.messaging.outcomes import Complete, Outcome
from worker.messaging.runner import Worker


@pytest.mark.parametrize(
    ("sessions", "receivers"),
    [(False, 1), (False, 3), (True, 1)],
    ids=["queue", "queue-3-receivers", "sessions"],
)
async def test_a_receive_that_lands_after_the_worker_stopped_waiting_wakes_it(
    peer: ServiceBusPeer, sessions: bool, receivers: int
) -> None:
    entity = SESSION_QUEUE if sessions else QUEUE
    peer.send(entity, "{}", message_id="m1", session_id="acme" if sessions else None)
    bus = azure_bus(peer.connection_string, entity, sessions, LOCK_S, receivers=receivers, prefetch=8)
    woken = asyncio.Event()
    bus.on_arrival(woken.set)
    try:
        await asyncio.wait_for(bus.open(), 30)
        # Work in flight: a receive that waits for nothing. It starts the fetch (or the accept)
        # and returns before it lands.
        assert await bus.receive(4, 0.0) == []
        await asyncio.wait_for(woken.wait(), 30)
        got = await bus.receive(4, 0.0)  # what landed is handed out at once
        assert [d.message_id for d in got] == ["m1"]
        await bus.complete(got[0])
    finally:
        await bus.close()
    assert peer.active_count(entity) == 0


class ArrivalBus(LocalBus):
    """A local bus that can say "something arrived" like a remote one, counting receives."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.wake: Callable[[], None] = lambda: None
        self.receives = 0
        self.returned = 0

    def on_arrival(self, wake: Callable[[], None]) -> None:
        self.wake = wake

    async def receive(self, max_count: int, wait_s: float) -> list[Delivery]:
        self.receives += 1
        try:
            return await super().receive(max_count, wait_s)
        finally:
            self.returned += 1


class Blocking:
    """Holds the first message until released."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def handle(self, delivery: Delivery) -> Outcome:
        self.started.set()
        await self.release.wait()
        return Complete("created")


async def test_the_worker_receives_again_when_its_bus_wakes_it_not_when_a_slot_frees(sqlite_url: str) -> None:
    db = Database(make_engine(sqlite_url))
    bus = ArrivalBus(db)
    handler = Blocking(db)
    worker = Worker(bus, handler, concurrency=2)
    await bus.publish([OutgoingMessage(body=b"{}", message_id="a", session_id="acme")])
    running = asyncio.create_task(worker.run(until_idle=True))
    try:
        await asyncio.wait_for(handler.started.wait(), 30)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while bus.returned < 2 and loop.time() < deadline:  # its receive after "a" found nothing
            await asyncio.sleep(0.01)
        before = bus.receives
        bus.wake()  # the worker now waits for "a" (up to a quarter of a second): this ends the wait
        for _ in range(20):
            await asyncio.sleep(0)
        assert bus.receives > before, "the worker did not receive again when its bus woke it"
        assert not handler.release.is_set()
    finally:
        handler.release.set()
        await asyncio.wait_for(running, 30)
        await db.close()
