"""What counts as the database being unreachable (``worker.outage.unreachable``): the errors the
drivers give when a server restarts or the network goes, against the errors of a statement."""

from __future__ import annotations

import pytest
from sqlalchemy import exc as sa_exc

from worker.outage import DatabaseUnavailable, unreachable


def _operational(text: str) -> sa_exc.OperationalError:
    return sa_exc.OperationalError("SELECT 1", {}, Exception(text))


@pytest.mark.parametrize(
    "text",
    [
        'connection failed: connection to server at "127.0.0.1", port 5432 failed: Connection refused',
        "terminating connection due to administrator command",
        "the database system is starting up",
        "the database system is shutting down",
        "consuming input failed: server closed the connection unexpectedly",
        "connection socket closed",
        "the connection is lost",
        "[08S01] [Microsoft][ODBC Driver 18 for SQL Server]TCP Provider: Error code 0x2746",
        "unable to open database file",
    ],
)
def test_a_restart_or_a_lost_network_is_unreachable(text: str) -> None:
    assert unreachable(_operational(text))


@pytest.mark.parametrize(
    "error",
    [
        _operational("no such table: sync_log"),
        _operational("database is locked"),
        sa_exc.IntegrityError("INSERT", {}, Exception("duplicate key value violates unique constraint")),
        ValueError("a mistake of ours"),
    ],
    ids=["missing table", "locked", "duplicate key", "our own"],
)
def test_a_statements_own_error_is_not(error: Exception) -> None:
    assert not unreachable(error)


def test_an_outage_already_known_and_a_dropped_socket_are() -> None:
    assert unreachable(DatabaseUnavailable("the database is not answering"))
    assert unreachable(ConnectionResetError("reset by peer"))
