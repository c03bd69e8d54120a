"""``Prepared`` on SQLite inside a transaction runs on the driver's cursor: the same transaction,
the same results and the same errors as through SQLAlchemy."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
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

from config_db.database import make_engine
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
