"""Test databases with the schema made once per session, not once per test.

SQLite: two template files per session (``create_all``, and Alembic's ``upgrade`` as ``cwi db upgrade``
leaves it); each test gets a copy (a file copy costs microseconds, a schema tens of milliseconds).

PostgreSQL: the session's database is migrated once; each test empties every table (TRUNCATE …
RESTART IDENTITY), which takes a third of the time of dropping and creating the schema and far less
than ``CREATE DATABASE … TEMPLATE`` and ``DROP DATABASE`` per test (measured: 0.03 s against 0.07 s
and 0.4 s). The models and the migrations are the same schema (tests/integration/test_config_db.py
compares them), so one migrated schema serves both fixtures. A test that drops or rebuilds the schema
itself (the process tests, the migration tests) is noticed and the schema rebuilt for the next one.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from sqlalchemy import Engine, text

from config_db.database import make_engine
from config_db.migrate import HEAD_REVISION, VERSION_TABLE, upgrade
from config_db.models import metadata

TABLES = tuple(table.name for table in metadata.sorted_tables)


def sqlite_template(path: Path, *, migrated: bool) -> Path:
    """A SQLite file with the current schema (by Alembic when ``migrated``), closed cleanly."""
    engine = make_engine(f"sqlite:///{path}")
    try:
        if migrated:
            upgrade(engine)
        else:
            metadata.create_all(engine)
    finally:
        engine.dispose()  # the last connection closed checkpoints the WAL into the main file
    wal = path.with_name(path.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0, f"{wal} was not checkpointed"
    return path


def sqlite_copy(template: Path, directory: Path) -> str:
    target = directory / "cwi.db"
    shutil.copyfile(template, target)
    return f"sqlite:///{target}"


def _schema_intact(engine: Engine) -> bool:
    with engine.connect() as conn:
        present = conn.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        ).scalars()
        if not set(TABLES) | {VERSION_TABLE} <= set(present):
            return False
        return conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar() == HEAD_REVISION


def _drop_schema(engine: Engine) -> None:
    """Whatever schema is there, and Alembic's version, gone."""
    metadata.drop_all(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {VERSION_TABLE}")


def rebuild_postgres(engine: Engine) -> None:
    """Drop whatever schema is there and migrate from scratch."""
    _drop_schema(engine)
    upgrade(engine)


def empty_postgres(url: str) -> str:
    """The session's PostgreSQL database with the current schema and no rows."""
    engine = make_engine(url, pool_size=1)
    try:
        if not _schema_intact(engine):
            rebuild_postgres(engine)
        with engine.begin() as conn:
            tables = ", ".join(f'"{name}"' for name in TABLES)
            conn.exec_driver_sql(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    finally:
        engine.dispose()
    return url


def unmigrated(url: str) -> Engine:
    """An engine on ``url`` with no schema and no Alembic version (a migration test's start; the
    session's PostgreSQL database is rebuilt for the next test, see ``empty_postgres``)."""
    engine = make_engine(url)
    _drop_schema(engine)
    return engine
