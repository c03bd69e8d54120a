"""Record leases and echo marks on SQLite and PostgreSQL (the statements render for SQL Server in
tests/unit/test_mssql_compile.py)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import update

from config_db import leases, marks
from config_db.database import make_engine
from config_db.leases import Lease, LeaseKey
from config_db.marks import Mark, RecordRef
from worker.db import Database
from worker.messaging.journal import prune_echo_marks


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(make_engine(db_url))
    yield database
    await database.close()


KEY = LeaseKey("acme", "generic_rest", "customer", "cw", "c1")


async def test_a_lease_is_held_by_one_message_until_released_or_run_out(db: Database) -> None:
    first, second = Lease(KEY, "t-1", "owner-1"), Lease(KEY, "t-2", "owner-2")
    assert await db.run(lambda c: leases.acquire(c, first, now_ms=1_000, lease_ms=500))
    assert not await db.run(lambda c: leases.acquire(c, second, now_ms=1_100, lease_ms=500)), "held"
    redelivered = Lease(KEY, "t-1", "owner-3")  # the same transport message, delivered again
    assert await db.run(lambda c: leases.acquire(c, redelivered, now_ms=1_200, lease_ms=500))
    await db.run(lambda c: leases.release(c, first))  # the first hold's release no longer counts
    assert not await db.run(lambda c: leases.acquire(c, second, now_ms=1_300, lease_ms=500))
    assert await db.run(lambda c: leases.acquire(c, second, now_ms=1_701, lease_ms=500)), "ran out"
    await db.run(lambda c: leases.release(c, second))
    assert await db.run(lambda c: leases.acquire(c, first, now_ms=1_702, lease_ms=500)), "released"


async def test_echo_marks_older_than_the_window_are_pruned(db: Database) -> None:
    ref = RecordRef("acme", "generic_rest", "customer", "erp", "GR-1")
    await db.run(lambda c: marks.add(c, ref, [Mark(marks.VERSION, "1"), Mark(marks.HASH, "h1")]))
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
    await db.run(lambda c: c.execute(update(marks.marks).values(at=old)))
    await db.run(lambda c: marks.add(c, ref, [Mark(marks.VERSION, "2")]))

    assert await prune_echo_marks(db, dt.timedelta(days=1)) == 2
    assert [m for _, m in await db.run(lambda c: marks.read(c, ref))] == [Mark(marks.VERSION, "2")]
