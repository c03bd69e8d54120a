"""Engine creation with the per-dialect settings the worker relies on."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool, StaticPool


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def make_engine(url: str, *, pool_size: int = 8) -> Engine:
    """An engine for ``url``; SQLite gets WAL, ``synchronous=NORMAL`` and a busy timeout."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        memory = parsed.database in (None, "", ":memory:")
        kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False, "isolation_level": None}}
        if memory:
            kwargs["poolclass"] = StaticPool
        elif pool_size == 0:
            kwargs["poolclass"] = NullPool
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own transaction handling is off (isolation_level=None): emit BEGIN ourselves
        # so SQLAlchemy's transaction boundaries are SQLite's. BEGIN IMMEDIATE takes the write
        # lock up front, so two writers never deadlock on a lock upgrade.
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() in ("", "psycopg2"):
        url = str(parsed.set(drivername="postgresql+psycopg"))
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
