"""The worker's group commits on the event loop's thread, on the writer's connection lent
(``Database._run_inline``): taken when that connection is idle and SQLite's write lock is free, left
to the writer thread otherwise; never a lost or doubled write, nor a connection left not waiting
for locks."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Connection

from config_db.database import make_engine
from worker.db import MAX_BATCH, Database


def _worker_db(path: Path) -> Database:
    db = Database(make_engine(f"sqlite:///{path}", autocheckpoint=False), checkpoint_s=30)
    db.run_sync(lambda conn: conn.exec_driver_sql("CREATE TABLE t (x INTEGER)"))
    return db


def _insert(x: int) -> Callable[[Connection], str]:
    def work(conn: Connection) -> str:
        conn.exec_driver_sql(f"INSERT INTO t VALUES ({x})")
        return threading.current_thread().name

    return work


async def _busy_timeout(db: Database) -> int:
    return int(await db.run(lambda conn: conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one()))


def _rows(db: Database) -> list[int]:
    rows = db.run_sync(lambda conn: conn.exec_driver_sql("SELECT x FROM t ORDER BY x").scalars().all())
    return list(rows)


def test_a_small_group_commit_runs_on_the_event_loop_when_the_lock_is_free(tmp_path: Path) -> None:
    db = _worker_db(tmp_path / "i.db")

    async def run() -> tuple[str, list[str]]:
        first = await db.batched(_insert(-1))  # the writer thread connects (and keeps it)
        return first, await asyncio.gather(*(db.batched(_insert(i)) for i in range(8)))

    try:
        first, threads = asyncio.run(run())
    finally:
        asyncio.run(db.close())
    assert first.startswith("cwi-db")
    assert set(threads) == {threading.main_thread().name}
    assert _rows(db) == list(range(-1, 8))


def test_a_group_commit_of_any_size_runs_on_the_event_loop_too(tmp_path: Path) -> None:
    """Many messages in flight: on the writer thread each statement would wait for the GIL of a
    busy loop. More than one batch's worth: two commits, both here."""
    db = _worker_db(tmp_path / "b.db")
    count = MAX_BATCH + 44

    async def run() -> list[str]:
        await db.batched(_insert(-1))
        return await asyncio.gather(*(db.batched(_insert(i)) for i in range(count)))

    try:
        threads = asyncio.run(run())
    finally:
        asyncio.run(db.close())
    assert set(threads) == {threading.main_thread().name}
    assert _rows(db) == list(range(-1, count))


def test_while_another_connection_holds_the_lock_the_writer_thread_waits_for_it(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    db = _worker_db(path)
    other = sqlite3.connect(path, isolation_level=None)

    async def run() -> list[str]:
        await db.batched(_insert(-1))
        other.execute("BEGIN IMMEDIATE")  # the write lock, as a CLI command's transaction holds it
        batch = asyncio.gather(*(db.batched(_insert(i)) for i in range(4)))
        await asyncio.sleep(0.3)
        assert not batch.done()  # waiting for the lock, not failed
        other.execute("COMMIT")
        return await batch

    try:
        threads = asyncio.run(run())
        # The writer's connection, lent to the loop meanwhile, waits for locks again.
        timeouts = asyncio.run(_busy_timeout(db))
    finally:
        asyncio.run(db.close())
        other.close()
    assert all(name.startswith("cwi-db") for name in threads)
    assert timeouts == 30_000
    assert _rows(db) == [-1, 0, 1, 2, 3]


def test_a_failing_function_fails_only_its_caller(tmp_path: Path) -> None:
    db = _worker_db(tmp_path / "f.db")

    def broken(conn: Connection) -> None:
        conn.exec_driver_sql("INSERT INTO missing VALUES (1)")

    async def run() -> list[object]:
        await db.batched(_insert(0))
        works: list[Callable[[Connection], object]] = [_insert(1), broken, _insert(2)]
        return await asyncio.gather(*(db.batched(w) for w in works), return_exceptions=True)

    try:
        results = asyncio.run(run())
    finally:
        asyncio.run(db.close())
    assert isinstance(results[1], Exception) and "missing" in str(results[1])
    assert not isinstance(results[0], Exception) and not isinstance(results[2], Exception)
    assert _rows(db) == [0, 1, 2]


def test_without_the_checkpointer_every_batch_goes_to_the_writer_thread(tmp_path: Path) -> None:
    """A database that is not the worker's (the listener's, the CLI's) keeps its thread."""
    path = tmp_path / "n.db"
    db = Database(make_engine(f"sqlite:///{path}"))
    db.run_sync(lambda conn: conn.exec_driver_sql("CREATE TABLE t (x INTEGER)"))

    async def run() -> list[str]:
        return await asyncio.gather(*(db.batched(_insert(i)) for i in range(3)))

    try:
        threads = asyncio.run(run())
    finally:
        asyncio.run(db.close())
    assert all(name.startswith("cwi-db") for name in threads)
