"""One worker a period keeps house, whatever the number of workers on the database.

The workers of a scale-out share one database; each used to prune the same echo marks and sync-log
rows every period. Now each takes the database's housekeeping turn first (``worker.housekeeping``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import Connection, func, select, text
from sqlalchemy.exc import DBAPIError, OperationalError

from config_db import marks, sync_log
from config_db import reconcile as runs
from config_db.database import make_engine
from config_db.marks import Mark, RecordRef
from config_db.models import echo_marks, reconcile_runs
from config_db.sync_log import Entry
from worker import housekeeping
from worker.db import Database
from worker.housekeeping import HOUSE, JOB, TurnLost, keep_house, renew_turn, take_turn

WINDOW = dt.timedelta(hours=1)
REF = RecordRef("acme", "sandbox", "customer", "erp", "e1")


@pytest.fixture
async def two(db_url: str) -> AsyncIterator[tuple[Database, Database]]:
    """Two workers' databases (engines of their own) on one database."""
    first, second = Database(make_engine(db_url)), Database(make_engine(db_url))
    yield first, second
    await first.close()
    await second.close()


def _old_marks(db: Database, n: int) -> None:
    old = dt.datetime.now(dt.UTC) - 2 * WINDOW

    def add(conn: Connection) -> None:
        marks.add(conn, REF, [Mark(marks.VERSION, f"v{i}") for i in range(n)])
        conn.execute(echo_marks.update().values(at=old))

    db.run_sync(add)


def _marks_left(db: Database) -> int:
    return int(
        db.run_sync(lambda conn: conn.execute(select(func.count()).select_from(echo_marks)).scalar_one())
    )


async def test_two_workers_at_once_keep_house_once_and_the_turn_is_let_go(
    two: tuple[Database, Database],
) -> None:
    first, second = two
    _old_marks(first, 3)
    ran = await asyncio.gather(
        keep_house(first, WINDOW, None, holder="w1"), keep_house(second, WINDOW, None, holder="w2")
    )
    assert sorted(ran) == [False, True]
    assert _marks_left(first) == 0
    row = first.run_sync(
        lambda conn: conn.execute(select(reconcile_runs).where(reconcile_runs.c.job == JOB)).one()
    )
    assert row.client_id == HOUSE and row.holder is None and row.last_run_at is not None
    assert row.last_outcome == "3 echo marks, 0 sync-log entries deleted"
    # Within the period nobody keeps house again, the one who did included.
    _old_marks(first, 2)
    assert not await keep_house(second, WINDOW, None, holder="w2")
    assert not await keep_house(first, WINDOW, None, holder="w1")
    assert _marks_left(first) == 2
    # A period later the next worker to come does.
    assert await keep_house(second, WINDOW, None, holder="w2", period_s=0.0)
    assert _marks_left(first) == 0


async def test_a_turn_held_by_a_worker_that_died_is_taken_once_its_lease_ran_out(
    two: tuple[Database, Database],
) -> None:
    db = two[0]
    assert db.run_sync(lambda conn: take_turn(conn, "died"))  # and never let go
    assert not db.run_sync(lambda conn: take_turn(conn, "alive", period_s=0.0))
    expired = reconcile_runs.update().where(reconcile_runs.c.job == JOB).values(until=0)
    db.run_sync(lambda conn: conn.execute(expired))
    assert db.run_sync(lambda conn: take_turn(conn, "alive", period_s=0.0))
    assert db.run_sync(lambda conn: runs.last_run(conn, HOUSE, JOB)) is None  # the dead one never ran


async def test_a_failed_upkeep_lets_the_turn_go_and_counts_as_the_periods_run(
    two: tuple[Database, Database],
) -> None:
    first, second = two
    first.run_sync(lambda conn: conn.execute(text("DROP TABLE echo_marks")))
    with pytest.raises(DBAPIError):
        await keep_house(first, WINDOW, None, holder="w1")
    row = first.run_sync(
        lambda conn: conn.execute(select(reconcile_runs).where(reconcile_runs.c.job == JOB)).one()
    )
    assert row.holder is None and row.last_outcome == "failed" and row.last_run_at is not None
    assert not await keep_house(second, WINDOW, None, holder="w2")  # the period's run, failed, was had


async def test_a_worker_stopped_as_it_takes_the_turn_lets_it_go(two: tuple[Database, Database]) -> None:
    """The runner cancels its housekeeping when the worker stops; a turn taken at that moment must
    not stay held for the lease's 15 minutes (nor count as the period's run)."""
    first, second = two
    stopping = asyncio.create_task(keep_house(first, WINDOW, None, holder="w1"))
    await asyncio.sleep(0)  # it now waits for its turn to be taken
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopping
    rows = first.run_sync(
        lambda conn: conn.execute(select(reconcile_runs.c.holder, reconcile_runs.c.last_run_at)).all()
    )
    assert all(tuple(row) == (None, None) for row in rows), rows
    assert await keep_house(second, WINDOW, None, holder="w2"), "the next worker need not wait"


async def test_a_worker_stopped_while_the_database_refuses_the_turn_stops(
    two: tuple[Database, Database], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found on a full disk: the refusal took the stop's place, so the runner logged it as a failed
    upkeep and kept house again, and the worker waited for it for ever."""
    first, _ = two

    def refused(conn: Connection, holder: str, *, period_s: float) -> bool:
        time.sleep(0.2)  # the statement is under way when the stop comes
        raise OperationalError("UPDATE reconcile_runs", {}, Exception("database or disk is full"))

    monkeypatch.setattr(housekeeping, "take_turn", refused)
    stopping = asyncio.create_task(keep_house(first, WINDOW, None, holder="w1"))
    await asyncio.sleep(0.05)
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopping


def _old_entries(db: Database, n: int) -> None:
    """``n`` sync-log entries no message needs, older than a day's retention."""
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
    entry = Entry(direction="outbound", action="pending", message_id=None, client_id=None, at=old)

    def add(conn: Connection) -> None:
        for _ in range(n):
            sync_log.record(conn, entry)

    db.run_sync(add)


def _lease(db: Database) -> tuple[str | None, int | None]:
    """Who holds the turn and until when (nobody before the first turn is taken)."""
    row = db.run_sync(
        lambda conn: conn.execute(
            select(reconcile_runs.c.holder, reconcile_runs.c.until).where(reconcile_runs.c.job == JOB)
        ).first()
    )
    return (None, None) if row is None else (row.holder, row.until)


async def test_a_long_prune_renews_the_turn_so_no_other_worker_starts_it_again(
    two: tuple[Database, Database],
) -> None:
    """The lease is three periods: a prune outlasting it (a first retention over a big sync log) was
    taken up by the next worker and done twice. Its holder now renews it between batches."""
    first, _ = two
    _old_entries(first, 3_500)  # four batches of a thousand: three pauses between them
    seen: set[int] = set()

    async def watch() -> None:
        while True:
            holder, until = _lease(first)
            if holder == "w1" and until is not None:
                seen.add(until)
            await asyncio.sleep(0.01)

    watching = asyncio.create_task(watch())
    try:
        assert await keep_house(first, WINDOW, dt.timedelta(days=1), holder="w1", period_s=0.0)
    finally:
        watching.cancel()
    assert len(seen) >= 2 and max(seen) > min(seen), "the lease was extended while the prune ran"
    row = first.run_sync(
        lambda conn: conn.execute(select(reconcile_runs).where(reconcile_runs.c.job == JOB)).one()
    )
    assert row.holder is None and row.last_outcome == "0 echo marks, 3500 sync-log entries deleted"


async def test_a_holder_whose_lease_ran_out_and_was_taken_stops_pruning(
    two: tuple[Database, Database],
) -> None:
    """Stalled past its lease (a paused VM), the holder finds the turn taken at its next renewal and
    leaves the rest of the prune to the new holder instead of pruning beside it."""
    first, second = two
    _old_entries(first, 3_500)
    expired = reconcile_runs.update().where(reconcile_runs.c.job == JOB).values(until=0)

    async def take_over() -> None:
        while _lease(first)[0] != "w1":
            await asyncio.sleep(0.005)
        second.run_sync(lambda conn: conn.execute(expired))
        assert second.run_sync(lambda conn: take_turn(conn, "w2", period_s=0.0))

    taking = asyncio.create_task(take_over())
    with pytest.raises(TurnLost, match="ran out while pruning"):
        await keep_house(first, WINDOW, dt.timedelta(days=1), holder="w1", period_s=0.0)
    await taking
    assert _lease(first)[0] == "w2", "w1 let go of nothing it no longer held"
    assert not first.run_sync(lambda conn: renew_turn(conn, "w1"))
    left = first.run_sync(
        lambda conn: conn.execute(select(func.count()).select_from(sync_log.log)).scalar_one()
    )
    assert 0 < left < 3_500, "w1 stopped between two batches"
