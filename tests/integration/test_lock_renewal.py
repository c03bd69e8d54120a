"""The locks of the messages in flight (worker.messaging.locks.LockKeeper), on the local bus: a push
longer than the lock settles under renewed locks, whatever a renewal meets on the way."""

from __future__ import annotations

import asyncio
import dataclasses
import time

from structlog.testing import capture_logs

from config_db.database import make_engine
from worker.buses.base import Delivery, OutgoingMessage
from worker.buses.local import LocalBus
from worker.db import Database
from worker.messaging.locks import MIN_WAIT_S, LockKeeper
from worker.messaging.outcomes import Complete, Outcome
from worker.messaging.runner import Worker

LOCK_S = 1.0


class SlowPush:
    """A handler whose every message takes ``seconds`` (a slow ERP)."""

    def __init__(self, db: Database, seconds: float) -> None:
        self.db, self.seconds = db, seconds

    async def handle(self, delivery: Delivery) -> Outcome:
        await asyncio.sleep(self.seconds)
        return Complete("created")


class FlakyRenewals(LocalBus):
    """Its first ``failures`` renewals fail as a database blip would; it records when each one is
    asked for."""

    def __init__(self, db: Database, failures: int = 1, lock_s: float = LOCK_S) -> None:
        super().__init__(db, lock_duration_s=lock_s)
        self.renewals: list[float] = []
        self.failures = failures

    async def renew_lock(self, delivery: Delivery) -> None:
        self.renewals.append(time.monotonic())
        if len(self.renewals) <= self.failures:
            raise ConnectionResetError("the database went away for a moment")
        await super().renew_lock(delivery)


class AgedInABuffer(FlakyRenewals):
    """Hands each message out as if it had waited in a prefetch buffer: a fifth of its lock left."""

    async def receive(self, max_count: int, wait_s: float) -> list[Delivery]:
        got = await super().receive(max_count, wait_s)
        self.handed_out = time.monotonic()
        return [dataclasses.replace(d, lock_expires=self.handed_out + LOCK_S / 5) for d in got]

    async def renew_lock(self, delivery: Delivery) -> None:
        self.renewals.append(time.monotonic())
        await LocalBus.renew_lock(self, delivery)


class SlowToAnswer(FlakyRenewals):
    """Its receives reach the worker ``late`` seconds after their statement locked the messages, as
    a group commit's answer reaches a loaded event loop."""

    def __init__(self, db: Database, late: float) -> None:
        super().__init__(db, failures=0)
        self.late = late

    async def receive(self, max_count: int, wait_s: float) -> list[Delivery]:
        got = await super().receive(max_count, wait_s)
        if got:
            await asyncio.sleep(self.late)
        return got


async def _slow_messages(bus: LocalBus, db: Database, seconds: float, count: int = 1) -> dict[str, int]:
    await bus.publish([OutgoingMessage(b"{}", f"m{n}", f"client{n}") for n in range(count)])
    worker = Worker(bus, SlowPush(db, seconds), concurrency=count)
    stats = await worker.run(until_idle=True)
    return dict(stats.counts)


async def test_a_failed_renewal_is_tried_again_and_the_renewing_goes_on(sqlite_url: str) -> None:
    """It ended the renewing for the worker's life: the push lost its lock and came back."""
    db = Database(make_engine(sqlite_url))
    bus = FlakyRenewals(db)
    try:
        counts = await _slow_messages(bus, db, seconds=LOCK_S * 2.5)
    finally:
        await db.close()
    assert counts == {"created": 1}, "settled under a renewed lock"
    assert len(bus.renewals) >= 3, "renewed again after the failure, and on"


async def test_a_message_handed_out_with_little_lock_left_is_renewed_at_once(sqlite_url: str) -> None:
    db = Database(make_engine(sqlite_url))
    bus = AgedInABuffer(db)
    try:
        counts = await _slow_messages(bus, db, seconds=LOCK_S)
    finally:
        await db.close()
    assert counts == {"created": 1}
    assert bus.renewals, "renewed"
    assert bus.renewals[0] - bus.handed_out < LOCK_S / 5, "before the little that was left ran out"


async def test_a_local_lock_is_reckoned_from_its_statement_not_from_when_the_answer_came(
    sqlite_url: str,
) -> None:
    """Reckoned from the hand-out, the renewal came 0.6 lock after the answer, 1.2 after the lock
    was taken: lost (test_worker's retry test on PostgreSQL, on a loaded machine)."""
    db = Database(make_engine(sqlite_url))
    bus = SlowToAnswer(db, late=LOCK_S * 0.6)
    try:
        counts = await _slow_messages(bus, db, seconds=LOCK_S)
    finally:
        await db.close()
    assert counts == {"created": 1}, "settled under a renewed lock"


async def test_renewals_failing_for_a_while_are_told_once_and_their_end_once(sqlite_url: str) -> None:
    """Every held message at every retry was a warning of its own: a flood during an outage."""
    db = Database(make_engine(sqlite_url))
    bus = FlakyRenewals(db, failures=6, lock_s=2.0)  # two rounds of three, a quarter-lock left
    try:
        with capture_logs() as logs:
            counts = await _slow_messages(bus, db, seconds=3.0, count=3)
    finally:
        await db.close()
    assert counts == {"created": 3}
    told = [e["event"] for e in logs if e["log_level"] in ("warning", "info") and "renewals" in e["event"]]
    assert told == ["lock renewals failing; retrying", "lock renewals work again"]


async def test_a_lock_of_a_few_milliseconds_does_not_make_renewing_a_busy_loop(sqlite_url: str) -> None:
    """The wait was capped at half a lock after its floor: 0.5 ms turns with CWI_LOCK_DURATION_S=0.001."""
    db = Database(make_engine(sqlite_url))
    keeper = LockKeeper(LocalBus(db, lock_duration_s=0.001))
    task = asyncio.create_task(keeper.run())
    try:
        await asyncio.sleep(0.5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await db.close()
    assert 0 < keeper.rounds <= 0.5 / MIN_WAIT_S + 2
