"""SQLite's checkpoints in a thread of their own (``worker.checkpoints.Checkpointer``): the worker's commits
never copy the write-ahead log themselves, and what they wrote still reaches the database file."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event

import config_db.database
import worker.checkpoints
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

    def insert(i: int) -> Callable[[Connection], object]:
        return lambda conn: conn.exec_driver_sql(f"INSERT INTO t VALUES ({i})")

    async def write() -> None:
        await db.run(create)
        await asyncio.gather(*(db.batched(insert(i)) for i in range(rows)))

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


def _unsynced(dbapi_conn: Any, _record: object) -> None:
    dbapi_conn.execute("PRAGMA synchronous=OFF")


def _insert_a_page(conn: Connection) -> None:
    conn.exec_driver_sql("INSERT INTO t VALUES (randomblob(3000))")


class _Load:
    """The worker's own writes at full tilt: rounds of 16 group-committed inserts of about a page
    each through ``Database.batched``, on an engine that never checkpoints by itself.

    Its checkpoints do not sync the file (``synchronous=OFF``): on a machine whose disk is busy
    with other tests, one sync took long enough for the log to grow by a third of what the test
    writes before the restart was due; what is tested here is the restart, not the disk."""

    def __init__(self, path: Path, **options: Any) -> None:
        self.path, self.wal = path, Path(f"{path}-wal")
        engine = make_engine(f"sqlite:///{path}", autocheckpoint=False)
        event.listen(engine, "connect", _unsynced)
        self.db = Database(engine, **options)
        self.db.run_sync(lambda conn: conn.exec_driver_sql("CREATE TABLE t (x BLOB)"))
        self.written = self.largest_log = 0

    async def rounds(self, n: int) -> None:
        for _ in range(n):
            await asyncio.gather(*(self.db.batched(_insert_a_page) for _ in range(16)))
            self.written += 16 * 3000
            self.largest_log = max(self.largest_log, self.wal.stat().st_size)

    def a_restart_between_two_rounds(self) -> None:
        """A round, a restart flagged due, another round (whose first transaction runs it); closed."""
        assert self.db.checkpointer is not None
        checkpointer = self.db.checkpointer

        async def run() -> None:
            await self.rounds(1)
            checkpointer.restart_due = True
            await self.rounds(1)

        try:
            asyncio.run(run())
        finally:
            asyncio.run(self.db.close())

    def rows(self) -> int:
        return int(self.db.run_sync(lambda conn: conn.exec_driver_sql("SELECT count(*) FROM t").scalar_one()))


def test_under_steady_writes_the_log_starts_over_instead_of_growing(tmp_path: Path) -> None:
    """A passive checkpoint never catches up with a writer that keeps writing, so the log only
    ever grew (750 MB in eight seconds of `cwi bench`); past ``restart_frames`` pages it restarts."""
    load = _Load(tmp_path / "s.db", checkpoint_s=0.005, restart_frames=200)
    try:
        asyncio.run(load.rounds(500))  # 24 MB of rows
    finally:
        asyncio.run(load.db.close())
    assert load.db.checkpointer is not None and load.db.checkpointer.restarts > 0
    assert load.largest_log < load.written / 4
    assert load.rows() == 8000


def test_a_long_read_holds_the_restart_off_but_never_the_writer_for_long(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader of an older snapshot keeps the log from starting over: the restart waits for it at
    most RESTART_WAIT_MS, then not again for ``restart_backoff_s``; every write goes through. Once
    the reader is gone the log starts over, and its file is cut back to WAL_SIZE_LIMIT."""
    monkeypatch.setattr(config_db.database, "WAL_SIZE_LIMIT", 1_000_000)
    load = _Load(tmp_path / "r.db", checkpoint_s=0.005, restart_frames=50)
    checkpointer = load.db.checkpointer
    assert checkpointer is not None
    checkpointer._restart_backoff_s = 0.5
    reader = sqlite3.connect(load.path, isolation_level=None)

    async def run() -> tuple[int, float, int]:
        await load.rounds(2)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM t").fetchone()  # holds this snapshot
        held_since = time.monotonic()
        while (
            checkpointer.held_off < 2 or load.largest_log < 3_000_000
        ) and time.monotonic() - held_since < 20:
            await load.rounds(5)
            await asyncio.sleep(0.02)  # a few MB of log while the reader holds it, not a hundred
        held_for = time.monotonic() - held_since
        restarts = checkpointer.restarts
        reader.execute("COMMIT")
        deadline = time.monotonic() + 10
        while checkpointer.restarts == restarts and time.monotonic() < deadline:
            await load.rounds(5)
            await asyncio.sleep(0.02)
        return restarts, held_for, load.wal.stat().st_size

    try:
        restarts, held_for, log_after = asyncio.run(run())
    finally:
        asyncio.run(load.db.close())
        reader.close()
    assert restarts == 0  # not while the reader held its snapshot
    assert 2 <= checkpointer.held_off <= held_for / 0.5 + 2  # one wait per backoff, no more
    assert checkpointer.restarts > 0  # the reader gone, the log starts over
    assert load.largest_log >= 3_000_000 > 2_000_000 > log_after  # and its file is cut back
    assert load.rows() == load.written // 3000


def test_a_restart_that_fails_never_fails_the_writers_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The restart runs before one of the writer's transactions: its error is a restart held off
    (tried again later), and the transaction goes on."""

    def locked(_conn: object) -> bool:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(worker.checkpoints, "_restart", locked)
    load = _Load(tmp_path / "f.db", checkpoint_s=30)
    checkpointer = load.db.checkpointer
    assert checkpointer is not None
    load.a_restart_between_two_rounds()
    assert (checkpointer.held_off, checkpointer.restarts, checkpointer.restart_due) == (1, 0, False)
    assert load.rows() == 32


def test_no_passive_checkpoint_of_ours_starts_while_the_restart_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``restart_due`` (the checkpointer's gate) stays set until the restart is done: a passive
    checkpoint started in between would hold the restart up (its sync of the file took longer than
    RESTART_WAIT_MS on a loaded machine) and the log would grow for ``restart_backoff_s``."""
    gate_during_restart: list[bool] = []
    load = _Load(tmp_path / "g.db", checkpoint_s=30)
    checkpointer = load.db.checkpointer
    assert checkpointer is not None

    def restart(_conn: object) -> bool:
        gate_during_restart.append(checkpointer.restart_due)
        return False

    monkeypatch.setattr(worker.checkpoints, "_restart", restart)
    load.a_restart_between_two_rounds()
    assert gate_during_restart == [True]
    assert (checkpointer.restarts, checkpointer.held_off, checkpointer.restart_due) == (1, 0, False)
