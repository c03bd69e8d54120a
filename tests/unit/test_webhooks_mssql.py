"""The webhook tables' queries compile for SQL Server too (the DDL is covered by test_mssql_compile)."""

from __future__ import annotations

import pytest
from sqlalchemy.dialects import mssql, postgresql, sqlite
from sqlalchemy.engine import Dialect

from config_db import webhooks

STATEMENTS = {
    "q_endpoint": webhooks.q_endpoint("ab" * 32),
    "q_client_endpoints": webhooks.q_client_endpoints("acme"),
    "s_insert_endpoint": webhooks.s_insert_endpoint("ab" * 32, "acme", "tripletex"),
    "s_delete_endpoints": webhooks.s_delete_endpoints("acme"),
    "q_receipts": webhooks.q_receipts("acme", "tripletex", ["k1", "k2"]),
    "s_insert_receipt": webhooks.s_insert_receipt("acme", "tripletex", "k1"),
}

# The dialects' constructors are untyped in SQLAlchemy.
MSSQL: Dialect = mssql.dialect()  # type: ignore[no-untyped-call]
POSTGRESQL: Dialect = postgresql.dialect()  # type: ignore[no-untyped-call]


@pytest.mark.parametrize("name", sorted(STATEMENTS))
@pytest.mark.parametrize("dialect", [MSSQL, POSTGRESQL, sqlite.dialect()], ids=lambda d: d.name)
def test_queries_compile(name: str, dialect: Dialect) -> None:
    sql = str(STATEMENTS[name].compile(dialect=dialect))
    assert sql.split()[0] in {"SELECT", "INSERT", "DELETE"}


def test_receipt_keys_fit_the_column() -> None:
    assert webhooks.receipt_key("evt-1") == "evt-1"
    long = webhooks.receipt_key("x" * 1000)
    assert len(long) <= 255 and long == webhooks.receipt_key("x" * 1000) != webhooks.receipt_key("y" * 1000)
