"""The CW values each message carried (``record_values``): the console's "values written"."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Insert, insert, or_, select

from config_db.models import record_values
from config_db.prepared import Prepared

values = record_values

S_INSERT: Insert = insert(values)
_COLUMNS = ["client_id", "message_id", "entity", "cw_id", "data", "number", "name", "at"]
_INSERT = Prepared(S_INSERT, column_keys=_COLUMNS)  # once per completed write: the fast path


@dataclass(frozen=True, slots=True)
class Stored:
    at: dt.datetime
    message_id: str
    entity: str
    cw_id: str
    data: str


def add(
    db: Connection,
    *,
    client_id: str,
    message_id: str,
    entity: str,
    cw_id: str,
    data: str,
    number: str | None,
    name: str | None,
    at: dt.datetime,
) -> None:
    _INSERT.execute(
        db,
        {
            "client_id": client_id,
            "message_id": message_id,
            "entity": entity,
            "cw_id": cw_id,
            "data": data,
            "number": None if number is None else number[:255],
            "name": None if name is None else name[:255],
            "at": at,
        },
    )


def of_record(db: Connection, client_id: str, entity: str, cw_id: str, limit: int = 500) -> list[Stored]:
    c = values.c
    rows = db.execute(
        select(c.at, c.message_id, c.entity, c.cw_id, c.data)
        .where(c.client_id == client_id, c.entity == entity, c.cw_id == cw_id)
        .order_by(c.id.desc())
        .limit(limit)
    )
    return [Stored(*row) for row in rows]


def find(
    db: Connection, client_id: str, text: str, limit: int = 50
) -> list[tuple[str, str, str | None, str | None]]:
    """Records whose number is ``text`` or whose name contains it: (entity, cw_id, number, name)."""
    c = values.c
    pattern = f"%{text.replace('%', '').replace('_', '')}%"
    rows = db.execute(
        select(c.entity, c.cw_id, c.number, c.name)
        .where(c.client_id == client_id, or_(c.number == text, c.name.ilike(pattern), c.cw_id == text))
        .order_by(c.id.desc())
        .limit(limit * 4)
    )
    seen: dict[tuple[str, str], tuple[str, str, str | None, str | None]] = {}
    for row in rows:
        seen.setdefault((row.entity, row.cw_id), (row.entity, row.cw_id, row.number, row.name))
    return list(seen.values())[:limit]


def jsonable(stored: Stored) -> dict[str, Any]:
    return {"at": stored.at.isoformat(), "message_id": stored.message_id, "data": stored.data}
