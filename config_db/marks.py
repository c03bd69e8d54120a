"""Echo marks: every version, content hash and fingerprint we wrote to either side, for a window.

Keeping only the last write (as record links do) misses echoes that arrive late: two quick
writes of one record, and the webhook of the first comes back after the second. A mark per write
recognises each of them; marks older than the window are pruned in batches.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Delete, Insert, Select, and_, bindparam, delete, insert, select

from config_db.models import echo_marks, utcnow
from config_db.prepared import Prepared

marks = echo_marks

VERSION = "version"
HASH = "hash"
TOMBSTONE = "tombstone"
FINGERPRINT = "fingerprint"
_RECORD = ("client_id", "provider", "entity", "side", "record_key")


@dataclass(frozen=True, slots=True)
class Mark:
    kind: str
    value: str


@dataclass(frozen=True, slots=True)
class RecordRef:
    """Whose marks: one record on one side (``erp``: by external id, ``cw``: by CW id)."""

    client_id: str
    provider: str
    entity: str
    side: str
    record_key: str

    def params(self) -> dict[str, str]:
        return {f"r_{name}": getattr(self, name) for name in _RECORD}


def _of_record() -> Any:
    return and_(*(marks.c[name] == bindparam(f"r_{name}") for name in _RECORD))


Q_MARKS: Select[Any] = select(marks.c.id, marks.c.kind, marks.c.value).where(_of_record())
S_INSERT: Insert = insert(marks)
_INSERT = Prepared(S_INSERT, column_keys=[*_RECORD, "kind", "value", "at"])
S_CONSUME: Delete = delete(marks).where(marks.c.id == bindparam("b_id"))


@functools.cache
def q_expired(limit: int) -> Select[Any]:
    return select(marks.c.id).where(marks.c.at < bindparam("b_before")).order_by(marks.c.id).limit(limit)


S_DELETE_IDS: Delete = delete(marks).where(marks.c.id.in_(bindparam("b_ids", expanding=True)))


def read(conn: Connection, record: RecordRef) -> list[tuple[int, Mark]]:
    return [(row.id, Mark(row.kind, row.value)) for row in conn.execute(Q_MARKS, record.params())]


def add(conn: Connection, record: RecordRef, new: Iterable[Mark]) -> None:
    at = utcnow()
    base = {name: getattr(record, name) for name in _RECORD}
    for mark in new:
        _INSERT.execute(conn, {**base, "kind": mark.kind, "value": mark.value[:64], "at": at})


def consume(conn: Connection, mark_id: int) -> None:
    conn.execute(S_CONSUME, {"b_id": mark_id})


def prune(conn: Connection, *, older_than: dt.timedelta, batch: int = 1000) -> int:
    """Delete up to ``batch`` marks older than the window; returns how many (call again while > 0)."""
    ids: Sequence[int] = conn.execute(q_expired(batch), {"b_before": utcnow() - older_than}).scalars().all()
    if ids:
        conn.execute(S_DELETE_IDS, {"b_ids": list(ids)})
    return len(ids)
