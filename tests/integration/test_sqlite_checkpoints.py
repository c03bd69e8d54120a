"""SQLite's checkpoints in a thread of their own (``worker.db.Checkpointer``): the worker's commits
never copy the write-ahead log themselves, and what they wrote still reaches the database file."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine

from config_db.database import make_engine
from worker.bootstrap import make_database
from worker.db import Database
from worker.settings import Settings


def _in_file(path: Path) -> int:
    """Rows of ``t`` in the database file itself, the write-ahead log ignored (``immutable``)."""
    conn = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM t").fetchone()[0])
    except sqlite3.OperationalError:  # no such table: not in the file yet
        return 0
    finally:
        conn.close()


def _autocheckpoint(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one())


def _writes(db: Database, rows: int) -> None:
    def create(conn: Connection) -> None:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")

    async def write() -> None:
        await db.run(create)
        await asyncio.gather(
            *(
                db.batched(lambda conn, i=i: conn.exec_driver_sql(f"INSERT INTO t VALUES ({i})"))
                for i in range(rows)
            )
        )

    asyncio.run(write())


def test_a_worker_engine_leaves_checkpoints_to_whoever_asks(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    worker, other = make_engine(url, autocheckpoint=False), make_engine(url)
    try:
        assert (_autocheckpoint(worker), _autocheckpoint(other)) == (0, 1000)
    finally:
        worker.dispose()
        other.dispose()


def test_the_checkpointer_copies_the_log_into_the_file_while_the_worker_runs(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    db = Database(make_engine(f"sqlite:///{path}", autocheckpoint=False), checkpoint_s=0.02)
    try:
        _writes(db, 300)
        deadline = time.monotonic() + 10
        while _in_file(path) < 300 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _in_file(path) == 300
        assert db.checkpointer is not None and db.checkpointer.runs > 0
    finally:
        asyncio.run(db.close())


def test_without_it_the_writes_stay_in_the_log_until_close_checkpoints(tmp_path: Path) -> None:
    """The control: the same writes with nobody checkpointing are not in the file, so the test
    above sees the checkpointer's work, not the commits'."""
    path = tmp_path / "n.db"
    db = Database(make_engine(f"sqlite:///{path}", autocheckpoint=False))
    try:
        _writes(db, 300)
        time.sleep(0.1)
        assert _in_file(path) == 0
    finally:
        asyncio.run(db.close())


def test_close_ends_the_thread_after_a_last_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "e.db"
    db = Database(make_engine(f"sqlite:///{path}", autocheckpoint=False), checkpoint_s=30)
    _writes(db, 50)
    assert _in_file(path) == 0  # the first period (30 s) has not come
    asyncio.run(db.close())
    assert _in_file(path) == 50
    assert db.checkpointer is not None and not db.checkpointer._thread.is_alive()


@pytest.mark.parametrize(("url", "background"), [("sqlite:///{tmp}/w.db", True), ("sqlite://", False)])
def test_the_worker_database_checkpoints_in_the_background_on_an_sqlite_file(
    tmp_path: Path, url: str, background: bool
) -> None:
    db = make_database(Settings(database_url=url.format(tmp=tmp_path), secret_key="k" * 32))
    try:
        assert (db.checkpointer is not None) is background
        assert _autocheckpoint(db.engine) == (0 if background else 1000)
    finally:
        asyncio.run(db.close())
