"""`cwi status`'s last outcome per connection, with thousands of clients failing: their failures are
looked up in chunks (SQL Server takes at most 2,100 parameters in a statement)."""

from __future__ import annotations

from collections.abc import Sized

from sqlalchemy import Engine, event, insert

from config_db.models import sync_log
from config_db.sync_log import last_outcomes

CLIENTS = 2300


def test_thousands_of_failing_clients_each_get_their_last_failure(engine: Engine) -> None:
    rows = [
        {"client_id": f"c{n}", "provider": "tripletex", "direction": "outbound", "action": action}
        for n in range(CLIENTS)
        for action in ("created", "retry")
    ]
    with engine.begin() as db:
        db.execute(insert(sync_log), rows)
    widest: list[int] = []

    def count(conn: object, cursor: object, statement: str, params: Sized, *args: object) -> None:
        widest.append(len(params))

    event.listen(engine, "before_cursor_execute", count)
    try:
        with engine.connect() as db:
            outcomes = last_outcomes(db)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(outcomes) == CLIENTS
    assert all(o["last_failure"] is not None and o["last_success"] is not None for o in outcomes)
    assert max(widest) <= 2100, "no statement beyond SQL Server's parameter cap"
