"""SQL Server cannot run here: the inbound statements and migration 0003 must compile for it."""

from __future__ import annotations

import pytest
from sqlalchemy import Column, MetaData, String, Table
from sqlalchemy.dialects import mssql, postgresql, sqlite
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


@pytest.mark.parametrize(
    "dialect", [mssql.dialect(), postgresql.dialect(), sqlite.dialect()], ids=lambda d: d.name
)
@pytest.mark.parametrize("name", sorted(STATEMENTS))
def test_inbound_statements_compile(name: str, dialect: object) -> None:
    sql = str(STATEMENTS[name].compile(dialect=dialect))  # type: ignore[arg-type]
    assert "record_links" in sql


def test_the_link_by_external_id_query_is_a_top_1_on_sql_server() -> None:
    sql = str(sync_log.Q_LINK_BY_EXTERNAL.compile(dialect=mssql.dialect()))
    assert "TOP" in sql and "cw_fingerprint" in sql


def test_the_fingerprint_column_is_bounded_on_sql_server() -> None:
    column = record_links.c.cw_fingerprint
    assert column.type.compile(dialect=mssql.dialect()) == "VARCHAR(64)"
    # What migration 0003 adds, as SQL Server DDL.
    table = Table("record_links", MetaData(), Column("cw_fingerprint", String(64), nullable=True))
    assert "cw_fingerprint VARCHAR(64) NULL" in str(CreateTable(table).compile(dialect=mssql.dialect()))
