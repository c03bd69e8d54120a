"""On an SQLite file each database thread keeps its connection between transactions (worker.db):
the same connection serves the next transaction, a broken one is replaced, close() closes it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import Connection, text

from config_db.database import make_engine
from worker.db import Database


def test_an_sqlite_file_keeps_one_connection_and_replaces_a_broken_one(tmp_path: Path) -> None:
    async def scenario() -> tuple[list[object], list[Connection], int]:
        db = Database(make_engine(f"sqlite:///{tmp_path / 'k.db'}"))
        seen: list[object] = []  # the driver's connections (held: ids are not reused)
        conns: list[Connection] = []

        def work(conn: Connection) -> int:
            seen.append(conn.connection.driver_connection)
            conns.append(conn)
            return int(conn.execute(text("SELECT 1")).scalar_one())

        await db.run(work)
        await asyncio.gather(db.batched(work), db.batched(work))

        def broken(conn: Connection) -> None:
            conn.invalidate()
            raise RuntimeError("the connection broke")

        with pytest.raises(RuntimeError, match="broke"):
            await db.run(broken)
        got = await db.run(work)
        assert not conns[-1].closed  # kept open between transactions
        await db.close()
        return seen, conns, got

    seen, conns, got = asyncio.run(scenario())
    assert conns[0] is conns[1] is conns[2]  # one connection kept for the first three transactions
    assert seen[0] is seen[1] is seen[2]
    assert seen[3] is not seen[0]  # a fresh one once the first was invalidated
    assert got == 1
    assert all(conn.closed for conn in conns)  # close() gave them back


def test_sqlite_in_memory_takes_its_connection_from_the_pool_each_time() -> None:
    async def scenario() -> bool:
        db = Database(make_engine("sqlite://"))
        kept: list[Connection] = []
        await db.run(kept.append)
        await db.close()
        return kept[0].closed

    assert asyncio.run(scenario())  # closed at the end of its transaction, not kept
