"""The local bus's SQL as SQL Server and PostgreSQL would receive it (rendered, not run)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.dialects import mssql, postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.schema import CreateIndex, CreateTable

from config_db.models import bus_messages
from worker.buses.local_sql import STATEMENTS, ready_statement, select_ready, select_ready_filtered

# deprecate_large_types: what a connection to SQL Server 2012+ sets (TEXT becomes VARCHAR(max))
MSSQL = mssql.dialect(deprecate_large_types=True)  # type: ignore[no-untyped-call]
POSTGRES = postgresql.dialect()  # type: ignore[no-untyped-call]
ROW_LOCK_HINT = "WITH (UPDLOCK, ROWLOCK, READPAST)"


def render(statement: Any, dialect: Dialect) -> str:
    return str(statement.compile(dialect=dialect))


@pytest.mark.parametrize("name", sorted(STATEMENTS))
@pytest.mark.parametrize("dialect", [MSSQL, POSTGRES], ids=["mssql", "postgresql"])
def test_every_statement_renders(name: str, dialect: Dialect) -> None:
    sql = render(STATEMENTS[name](), dialect)

    assert "bus_messages" in sql


def test_sql_server_receives_with_readpast_on_the_queue_table_only() -> None:
    sql = render(select_ready_filtered(10), MSSQL)

    assert sql.startswith("SELECT TOP __[POSTCOMPILE_param_1] ")
    # The hint must not reach the session subqueries: they have to see rows others hold locked.
    assert sql.count("READPAST") == 1
    assert f"FROM bus_messages {ROW_LOCK_HINT} \nWHERE" in sql
    assert "FOR UPDATE" not in sql
    assert "LIMIT" not in sql


def test_sql_server_uses_the_filtering_receive_query() -> None:
    assert ready_statement("mssql") is select_ready_filtered
    # Elsewhere one statement, its limit a parameter, whatever the count.
    assert ready_statement("postgresql")(10) is ready_statement("sqlite")(500) is select_ready()


@pytest.mark.parametrize("build", [lambda: select_ready(), lambda: select_ready_filtered(10)])
def test_postgresql_receives_with_skip_locked(build: Any) -> None:
    sql = render(build(), POSTGRES)

    assert sql.rstrip().endswith("FOR UPDATE SKIP LOCKED")
    assert "READPAST" not in sql


def test_bus_table_and_indexes_render_for_sql_server() -> None:
    table = bus_messages
    ddl = render(CreateTable(table), MSSQL)
    indexes = [render(CreateIndex(index), MSSQL) for index in table.indexes]

    assert "seq BIGINT NOT NULL IDENTITY" in ddl
    assert "message_id VARCHAR(128) NOT NULL" in ddl
    assert "body NVARCHAR(max)" in ddl, "bodies are Unicode on SQL Server too"
    assert sorted(i.split(" ON ")[0] for i in indexes) == [
        "CREATE INDEX ix_bus_ready",
        "CREATE INDEX ix_bus_session",
        "CREATE INDEX ix_bus_session_lock",
    ]
