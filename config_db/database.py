"""Engine creation with the per-dialect settings the worker relies on."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL
from sqlalchemy.engine import make_url as _make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import NullPool, StaticPool

from config_db.prepared import run_direct

BUSY_TIMEOUT_MS = 30_000
"""How long an SQLite statement waits for another connection's lock before it fails."""


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


@contextlib.contextmanager
def lock_wait(dbapi_conn: Any, ms: int) -> Iterator[None]:
    """Statements on ``dbapi_conn`` (an SQLite driver connection) wait at most ``ms`` for another
    connection's lock meanwhile, then ``BUSY_TIMEOUT_MS`` again."""
    dbapi_conn.execute(f"PRAGMA busy_timeout={ms}")
    try:
        yield
    finally:
        dbapi_conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")


def close_quietly(conn: Any) -> None:
    """Close ``conn`` (if any: a driver's connection or SQLAlchemy's), whatever state it is in."""
    if conn is not None:
        with contextlib.suppress(Exception):  # a broken connection is let go either way
            conn.close()


WAL_SIZE_LIMIT = 128 * 1024 * 1024
"""Bytes of write-ahead log file kept once the log starts over: a log that grew past it (restarts
held off by a long read) is cut back then; below it the file is reused, never shrunk (writing over
a page is cheaper than appending one)."""


def _no_autocheckpoint(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA wal_autocheckpoint=0")
    cur.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
    cur.close()


def is_sqlite_file(url: str) -> bool:
    """An SQLite database in a file (not in memory)."""
    parsed = make_url(url)
    return parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:")


def make_url(url: str) -> URL:
    """``url`` parsed; ArgumentError (a URL this installation cannot use) also for a port that is
    not a number, which SQLAlchemy lets through as int()'s ValueError."""
    try:
        return _make_url(url)
    except ValueError as exc:  # never the URL in the message: it may hold a password
        said = (
            "its port is not a number" if "invalid literal for int()" in str(exc) else "it cannot be parsed"
        )
        raise ArgumentError(said) from None


def make_engine(url: str, *, pool_size: int = 8, autocheckpoint: bool = True) -> Engine:
    """An engine for ``url``; SQLite gets WAL, ``synchronous=NORMAL`` and a busy timeout.

    ``autocheckpoint=False`` (SQLite): commits never copy the write-ahead log into the database
    themselves; whoever asks for it checkpoints (``worker.db``'s checkpointer thread)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False, "isolation_level": None}}
        if not is_sqlite_file(url):
            kwargs["poolclass"] = StaticPool
        elif pool_size == 0:
            kwargs["poolclass"] = NullPool
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        if not autocheckpoint:
            event.listen(engine, "connect", _no_autocheckpoint)
        # pysqlite's own transaction handling is off (isolation_level=None): emit BEGIN ourselves
        # so SQLAlchemy's transaction boundaries are SQLite's. BEGIN IMMEDIATE takes the write
        # lock up front, so two writers never deadlock on a lock upgrade. On the driver's cursor
        # (errors wrapped as SQLAlchemy wraps them), as config_db.prepared runs the message path.
        event.listen(engine, "begin", lambda conn: run_direct(conn, "BEGIN IMMEDIATE", ()))
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() in ("", "psycopg2"):
        url = str(parsed.set(drivername="postgresql+psycopg"))
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
