"""SQL Server cannot run here: the DDL and every query must at least compile for its dialect."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import Index, Table
from sqlalchemy.dialects import mssql, postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.schema import CreateIndex, CreateTable
from sqlalchemy.sql import ClauseElement

from config_db import clients, inbox, leases, marks, reconcile, sync_log
from config_db.models import metadata

# The dialects' constructors are untyped in SQLAlchemy.
MSSQL: Dialect = mssql.dialect()  # type: ignore[no-untyped-call]
POSTGRESQL: Dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
DIALECTS = [MSSQL, POSTGRESQL, sqlite.dialect()]
STATEMENTS = {
    "q_client": clients.q_client("acme"),
    "q_clients": clients.q_clients(),
    "q_connection": clients.q_connection("acme"),
    "q_connections": clients.q_connections(),
    "q_connection_locked": clients.q_connection("acme").with_for_update(),  # cwi secrets rotate
    "s_insert_client": clients.s_insert_client("acme", "Acme"),
    "s_insert_connection": clients.s_insert_connection(
        clients.StoredConnection("acme", "generic_rest", "http://x", {"a": "b"}, "c", True)
    ),
    "s_update_connection": clients.s_update_connection(
        clients.StoredConnection("acme", "generic_rest", "http://x", {"a": "b"}, "c", True)
    ),
    "Q_FINISHED": inbox.Q_FINISHED,
    "S_MARK_FINISHED": inbox.S_MARK_FINISHED.values(
        client_id="a", message_id="m", outcome="created", finished_at=dt.datetime.now(dt.UTC)
    ),
    "S_RECORD": sync_log.S_RECORD.values(
        sync_log.Entry(direction="outbound", action="pending", at=dt.datetime.now(dt.UTC)).row()
    ),
    "Q_LAST_ACTION": sync_log.Q_LAST_ACTION,
    "Q_LINK": sync_log.Q_LINK,
    "S_INSERT_LINK": sync_log.S_INSERT_LINK.values(client_id="a", provider="p", entity="customer", cw_id="c"),
    "S_UPDATE_LINK": sync_log.S_UPDATE_LINK,
    "Q_MESSAGE_STATE": sync_log.Q_MESSAGE_STATE,
    "q_entries": sync_log.q_entries("acme", "m", 10),
}


@pytest.mark.parametrize("table", metadata.sorted_tables, ids=lambda t: t.name)
def test_ddl_compiles_for_sql_server(table: Table) -> None:
    ddl = str(CreateTable(table).compile(dialect=MSSQL))
    assert "CREATE TABLE" in ddl
    for index in table.indexes:
        assert "CREATE INDEX" in str(CreateIndex(index).compile(dialect=MSSQL))


def test_no_unbounded_string_is_indexed_on_sql_server() -> None:
    # NVARCHAR(max) / VARCHAR(max) cannot be a key column on SQL Server.
    for table in metadata.sorted_tables:
        keyed = {c.name for c in table.primary_key.columns}
        for index in table.indexes:
            keyed |= {c.name for c in index.columns}
        for name in keyed:
            compiled = table.c[name].type.compile(dialect=MSSQL)
            assert "max" not in compiled.lower(), f"{table.name}.{name} is {compiled}"


@pytest.mark.parametrize("name", sorted(STATEMENTS))
@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.name)
def test_queries_compile(name: str, dialect: Dialect) -> None:
    sql = str(STATEMENTS[name].compile(dialect=dialect))
    assert sql.split()[0] in {"SELECT", "INSERT", "UPDATE", "DELETE"}


def test_limit_becomes_top_on_sql_server() -> None:
    assert "TOP" in str(sync_log.Q_LAST_ACTION.compile(dialect=MSSQL))


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.name)
def test_prepared_writes_compile(dialect: Dialect) -> None:
    from config_db.inbox import _MARK_FINISHED
    from config_db.sync_log import _INSERT_LINK, _RECORD, _UPDATE_LINK

    for prepared in (_RECORD, _INSERT_LINK, _UPDATE_LINK, _MARK_FINISHED):
        compiled = prepared.compiled(dialect)
        assert compiled is not None
        assert compiled.sql.split()[0] in {"INSERT", "UPDATE"}
        assert set(compiled.names) >= {"client_id"} or "k_client_id" in compiled.names


def test_the_message_state_read_is_prepared_except_where_sql_server_renders_top_per_execution() -> None:
    from config_db.sync_log import _MESSAGE_STATE

    for dialect in (POSTGRESQL, sqlite.dialect()):
        compiled = _MESSAGE_STATE.compiled(dialect)
        assert compiled is not None and "POSTCOMPILE" not in compiled.sql
        assert {"client_id", "message_id", "k_cw_id"} <= set(compiled.names)
    assert _MESSAGE_STATE.compiled(MSSQL) is None  # runs through execute(), TOP 1 rendered there


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.name)
def test_lease_marks_and_inbox_statements_compile(dialect: Dialect) -> None:
    statements = {
        **leases.statements(dialect),
        "mark_if_absent": inbox.mark_if_absent(dialect.name),
        "Q_MARKS": marks.Q_MARKS,
        "S_CONSUME": marks.S_CONSUME,
        "q_expired": marks.q_expired(10),
        "S_DELETE_IDS": marks.S_DELETE_IDS,
    }
    for name, statement in statements.items():
        assert isinstance(statement, ClauseElement)
        sql = str(statement.compile(dialect=dialect))
        assert sql.split()[0] in {"SELECT", "INSERT", "UPDATE", "DELETE"}, name
    insert_lease = leases.insert_lease(dialect.name)
    assert isinstance(insert_lease, ClauseElement)
    insert_sql = str(insert_lease.compile(dialect=dialect))
    if dialect.name == "mssql":
        assert "WITH (UPDLOCK, HOLDLOCK)" in insert_sql and "NOT (EXISTS" in insert_sql
        assert "TOP" in str(marks.q_expired(10).compile(dialect=dialect))
    else:
        assert "ON CONFLICT DO NOTHING" in insert_sql
    prepared = marks._INSERT.compiled(dialect)
    assert prepared is not None
    assert prepared.sql.startswith("INSERT")


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.name)
def test_inserts_if_absent_compile(dialect: Dialect) -> None:
    """The inserts that a concurrent writer of the same key must not make fail."""
    name = dialect.name
    for statement in (sync_log.insert_link_if_absent(name), inbox.mark_if_absent(name)):
        assert isinstance(statement, ClauseElement)
        sql = str(statement.compile(dialect=dialect))
        assert sql.split()[0] == "INSERT"
        assert ("NOT (EXISTS" if name == "mssql" else "ON CONFLICT") in sql


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.name)
def test_retention_and_timeline_statements_compile(dialect: Dialect) -> None:
    """Retention of the sync log and of record values (one batch: its ids, the delete, the dry run's
    count) and the record timeline's reads, whose indexes migration 0008 adds (partial on every
    dialect)."""
    from sqlalchemy import or_, select

    from config_db import retention

    c = sync_log.log.c
    own = (c.entity == "customer") & (c.cw_id == "c1")
    statements = {
        "sync log batch": retention.SYNC_LOG.span(1000),
        "sync log delete": retention.SYNC_LOG.delete,
        "sync log count": retention.SYNC_LOG.count,
        "values batch": retention.RECORD_VALUES.span(1000),
        "values delete": retention.RECORD_VALUES.delete,
        "values count": retention.RECORD_VALUES.count,
        "record entries": select(sync_log.log).where(
            c.client_id == "acme", or_(own, c.external_id.in_(["X1"]), c.message_id.in_(["m1"]))
        ),
    }
    for name, statement in statements.items():
        sql = str(statement.compile(dialect=dialect))
        assert sql.split()[0] in {"SELECT", "DELETE"}, name
    delete_sql = str(retention.SYNC_LOG.delete.compile(dialect=dialect))
    assert "NOT (EXISTS (SELECT" in delete_sql and "FROM inbox" in delete_sql
    assert "FROM sync_log, inbox" not in delete_sql, "the inbox subquery is correlated, not a join"
    values_sql = str(retention.RECORD_VALUES.delete.compile(dialect=dialect))
    assert "FROM record_values AS newer" in values_sql and "newer.id > record_values.id" in values_sql
    if dialect.name == "mssql":
        span = str(retention.SYNC_LOG.span(1000).compile(dialect=dialect))
        assert "TOP" in span and "ORDER BY" in span, span
    indexes: dict[str | None, Index] = {index.name: index for index in sync_log.log.indexes}
    for name in ("ix_sync_log_record", "ix_sync_log_external"):
        ddl = str(CreateIndex(indexes[name]).compile(dialect=dialect))
        assert "WHERE" in ddl and "IS NOT NULL" in ddl, ddl


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.name)
def test_the_scheduler_and_housekeeping_turns_compile(dialect: Dialect) -> None:
    """``config_db.reconcile``'s run lease: the scheduler's per client, the housekeeping's per database."""
    statements: dict[str, ClauseElement] = {
        "insert": reconcile.s_insert_run(dialect.name),
        "take": reconcile.s_take_run("*", "housekeeping", "h", now_ms=1, until=2),
        "release": reconcile.s_release_run("*", "housekeeping", "h", {"holder": None, "last_outcome": "ok"}),
        "last": reconcile.q_last_run("*", "housekeeping"),
    }
    for name, statement in statements.items():
        sql = str(statement.compile(dialect=dialect))
        assert "reconcile_runs" in sql, name
    if dialect is MSSQL:  # no ON CONFLICT there: NOT EXISTS under a key-range lock
        assert "UPDLOCK, HOLDLOCK" in str(statements["insert"].compile(dialect=dialect))
