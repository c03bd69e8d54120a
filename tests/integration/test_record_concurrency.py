"""Issue 10, failure 3: two deliveries of one record, or of one envelope, in flight at once (a queue
without sessions, a lock lost while the first delivery still works) settle cleanly: no
IntegrityError on the inbox or the record link, nothing dies, the ERP is written once. On the
local bus, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest

from config_db import inbox
from config_db.database import make_engine
from providers.base import OutboundChange, PushResult
from tests.dispatching import StaticConnections
from tests.integration.buses import OffsetClock
from tests.memory_sides import CLIENT, MemoryErp, body
from worker.buses.base import LockLostError, OutgoingMessage
from worker.buses.local import LocalBus
from worker.db import Database
from worker.messaging.dispatch import Dispatcher
from worker.messaging.outcomes import Complete, Outcome, Retry
from worker.messaging.retry import RetryPolicy

LOCK_S = 5.0
POLICY = RetryPolicy(delays=(1.0,), inprocess_attempts=1, base_wait_s=0.0)


class GatedErp(MemoryErp):
    """Holds every push until ``gate`` opens; ``entered`` is set once the first push waits."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()

    async def push(self, change: OutboundChange) -> PushResult:
        self.entered.set()
        await self.gate.wait()
        return await super().push(change)


def created(n: int = 1) -> dict[str, Any]:
    return {
        "id": f"e{n}",
        "client_id": CLIENT,
        "type": "customer.created",
        "source": "frontend",
        "occurred_at": (dt.datetime(2026, 11, 23, 10, tzinfo=dt.UTC)).isoformat(),
        "sequence": 1,
        "data": {"id": "c1", "number": "1001", "name": "Acme AS"},
    }


class Rig:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.clock = OffsetClock()
        self.bus = LocalBus(db, lock_duration_s=LOCK_S, clock=self.clock)
        self.erp = GatedErp()
        self.core = Dispatcher(db, StaticConnections(self.erp), POLICY, busy_wait_s=0.0)

    async def publish(self, env: dict[str, Any], transport_id: str) -> None:
        await self.bus.publish([OutgoingMessage(body(env), transport_id)])  # no session: a plain queue


@pytest.fixture
async def rig(db_url: str) -> AsyncIterator[Rig]:
    db = Database(make_engine(db_url))
    yield Rig(db)
    await db.close()


@pytest.mark.parametrize("first_settles_first", [True, False], ids=["first-first", "second-first"])
async def test_a_message_redelivered_while_its_first_delivery_still_works_settles_cleanly(
    rig: Rig, first_settles_first: bool
) -> None:
    """The first delivery's lock runs out mid-push (its renewal failed) and the same message is
    delivered again: both push (the ERP's Idempotency-Key makes it one write), both journal."""
    await rig.publish(created(), "t1")
    [first] = await rig.bus.receive(1, 0)
    handling = asyncio.create_task(rig.core.handle(first))
    await rig.erp.entered.wait()
    rig.clock.offset += LOCK_S + 1
    [second] = await rig.bus.receive(1, 0)
    assert second.message_id == first.message_id and second.delivery_count == 2
    again = asyncio.create_task(rig.core.handle(second))
    await asyncio.sleep(0.05)
    rig.erp.gate.set()
    outcomes: list[Outcome] = [await handling, await again]
    assert [type(o) for o in outcomes] == [Complete, Complete]

    async def settle(index: int) -> str:
        delivery = (first, second)[index]
        try:
            await rig.bus.complete(delivery, outcomes[index].journal)
        except LockLostError:
            return "lock_lost"
        return "completed"

    order = [0, 1] if first_settles_first else [1, 0]
    results = {i: await settle(i) for i in order}
    assert results == {0: "lock_lost", 1: "completed"}
    assert rig.erp.worker_writes() == 1
    assert rig.db.run_sync(lambda c: inbox.finished_outcome(c, CLIENT, "e1")) == "created"
    stats = await rig.bus.stats()
    assert (stats.active, stats.locked, stats.dead_lettered) == (0, 0, 0)


async def test_two_deliveries_of_one_envelope_at_once_write_once_and_both_settle(rig: Rig) -> None:
    """A publisher's retry: the same envelope under two transport ids, delivered together."""
    rig.erp.gate.set()
    await rig.publish(created(), "t1")
    await rig.publish(created(), "t2")
    got = await rig.bus.receive(2, 0)
    assert len(got) == 2
    outcomes = await asyncio.gather(*(rig.core.handle(d) for d in got))
    for delivery, outcome in zip(got, outcomes, strict=True):
        if isinstance(outcome, Retry):  # the record was busy: tried again shortly, no attempt spent
            await rig.bus.reschedule(delivery, 0.0, {}, outcome.journal)
        else:
            await rig.bus.complete(delivery, outcome.journal)
    for delivery in await rig.bus.receive(2, 0):
        outcome = await rig.core.handle(delivery)
        assert outcome == Complete("duplicate")
        await rig.bus.complete(delivery, outcome.journal)
    assert rig.erp.worker_writes() == 1
    stats = await rig.bus.stats()
    assert (stats.active, stats.scheduled, stats.locked, stats.dead_lettered) == (0, 0, 0, 0)
