"""``Prepared`` on SQLite inside a transaction runs on the driver's cursor: the same transaction,
the same results and the same errors as through SQLAlchemy."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import (
    Column,
    CursorResult,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    exc,
    insert,
    select,
)
from sqlalchemy.dialects import sqlite as sqlite_dialect

from config_db.database import make_engine
from config_db.models_base import UtcDateTime
from config_db.prepared import Prepared

META = MetaData()
T = Table("t", META, Column("id", Integer, primary_key=True), Column("name", String(20), unique=True))
INSERT = Prepared(insert(T), column_keys=["id", "name"])
BY_ID = Prepared(select(T.c.id, T.c.name).where(T.c.id == bindparam("b_id")))


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(f"sqlite:///{tmp_path / 'p.db'}")
    META.create_all(eng)
    yield eng
    eng.dispose()


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        return len(conn.execute(select(T.c.id)).all())


def test_a_write_belongs_to_the_callers_transaction(engine: Engine) -> None:
    with engine.connect() as conn, conn.begin() as tx:
        result = INSERT.execute(conn, {"id": 1, "name": "a"})
        assert not isinstance(result, CursorResult)  # the driver's cursor, not SQLAlchemy's
        assert result.rowcount == 1
        tx.rollback()
    assert _count(engine) == 0
    with engine.begin() as conn:
        INSERT.execute(conn, {"id": 1, "name": "a"})
    assert _count(engine) == 1


def test_a_read_gives_one_row_by_column_name(engine: Engine) -> None:
    with engine.begin() as conn:
        INSERT.execute(conn, {"id": 7, "name": "seven"})
        row = BY_ID.execute(conn, {"b_id": 7}).one()
        assert (row.id, row.name) == (7, "seven")
        with pytest.raises(exc.NoResultFound):
            BY_ID.execute(conn, {"b_id": 8}).one()


def test_the_drivers_error_is_sqlalchemys(engine: Engine) -> None:
    with pytest.raises(exc.IntegrityError, match="UNIQUE"), engine.begin() as conn:
        INSERT.execute(conn, {"id": 1, "name": "same"})
        INSERT.execute(conn, {"id": 2, "name": "same"})
    assert _count(engine) == 0  # the transaction rolled back as a whole


def test_outside_a_transaction_sqlalchemy_begins_one(engine: Engine) -> None:
    with engine.connect() as conn:
        result = INSERT.execute(conn, {"id": 3, "name": "c"})
        assert isinstance(result, CursorResult)
        assert conn.in_transaction()
        conn.commit()
    assert _count(engine) == 1


AT = Table("at", META, Column("id", Integer, primary_key=True), Column("at", UtcDateTime, nullable=True))
AT_INSERT = Prepared(insert(AT), column_keys=["id", "at"])
ZONES = st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=5.5)), dt.timezone(-dt.timedelta(hours=8))])
SPAN = (dt.datetime(1, 1, 2), dt.datetime(9999, 12, 30))  # min_value, max_value


@settings(max_examples=200, deadline=None)
@given(when=st.datetimes(*SPAN, timezones=ZONES))
def test_a_utc_timestamp_is_bound_as_sqlalchemy_binds_it(when: dt.datetime) -> None:
    processors = UtcDateTime().dialect_impl(sqlite_dialect.dialect()).bind_processor(sqlite_dialect.dialect())
    assert processors is not None
    assert UtcDateTime.sqlite_text(when) == processors(when)


def test_a_utc_timestamp_written_prepared_reads_back_as_written_through_sqlalchemy(engine: Engine) -> None:
    when = dt.datetime(2026, 12, 5, 9, 30, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    with engine.begin() as conn:
        AT_INSERT.execute(conn, {"id": 1, "at": when})
        AT_INSERT.execute(conn, {"id": 2, "at": None})
        conn.execute(insert(AT), {"id": 3, "at": when})
    with engine.connect() as conn:
        rows = dict(conn.execute(select(AT.c.id, AT.c.at)).all())
        texts: dict[int, str] = dict(conn.exec_driver_sql("SELECT id, at FROM at").all())
    assert rows == {1: when, 2: None, 3: when}
    assert texts[1] == texts[3] == "2026-12-05 08:30:00.000000"
    with pytest.raises(ValueError, match="naive"):
        UtcDateTime.sqlite_text(dt.datetime(2026, 1, 1))
