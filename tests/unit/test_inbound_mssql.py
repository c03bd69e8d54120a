"""SQL Server cannot run here: the inbound statements and migration 0003 must compile for it."""

from __future__ import annotations

import pytest
from sqlalchemy import Column, MetaData, String, Table
from sqlalchemy.dialects import mssql, postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.schema import CreateTable

from config_db import sync_log
from config_db.models import record_links

STATEMENTS = {
    "Q_LINK_BY_EXTERNAL": sync_log.Q_LINK_BY_EXTERNAL,
    "S_CLEAR_FINGERPRINT": sync_log.S_CLEAR_FINGERPRINT,
    "Q_LINK": sync_log.Q_LINK,
    "S_UPDATE_LINK": sync_log.S_UPDATE_LINK,
    "Q_MESSAGE_STATE": sync_log.Q_MESSAGE_STATE,
}

# The dialects' constructors are untyped in SQLAlchemy.
MSSQL: Dialect = mssql.dialect()  # type: ignore[no-untyped-call]
POSTGRESQL: Dialect = postgresql.dialect()  # type: ignore[no-untyped-call]


@pytest.mark.parametrize("dialect", [MSSQL, POSTGRESQL, sqlite.dialect()], ids=lambda d: d.name)
@pytest.mark.parametrize("name", sorted(STATEMENTS))
def test_inbound_statements_compile(name: str, dialect: Dialect) -> None:
    sql = str(STATEMENTS[name].compile(dialect=dialect))
    assert "record_links" in sql


def test_the_link_by_external_id_query_is_a_top_1_on_sql_server() -> None:
    sql = str(sync_log.Q_LINK_BY_EXTERNAL.compile(dialect=MSSQL))
    assert "TOP" in sql and "cw_fingerprint" in sql


def test_the_fingerprint_column_is_bounded_on_sql_server() -> None:
    column = record_links.c.cw_fingerprint
    assert column.type.compile(dialect=MSSQL) == "VARCHAR(64)"
    # What migration 0003 adds, as SQL Server DDL.
    table = Table("record_links", MetaData(), Column("cw_fingerprint", String(64), nullable=True))
    assert "cw_fingerprint VARCHAR(64) NULL" in str(CreateTable(table).compile(dialect=MSSQL))
