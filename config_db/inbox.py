"""The inbox: envelope ids whose processing finished, so a redelivery has no effect."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Connection, Executable, Insert, Select, bindparam, insert, select

from config_db.models import inbox, utcnow
from config_db.prepared import Prepared, insert_if_absent

Q_FINISHED: Select[Any] = select(inbox.c.outcome).where(
    inbox.c.client_id == bindparam("client_id"), inbox.c.message_id == bindparam("message_id")
)
S_MARK_FINISHED: Insert = insert(inbox)
_MARK_FINISHED = Prepared(S_MARK_FINISHED, column_keys=["client_id", "message_id", "outcome", "finished_at"])


@functools.cache
def mark_if_absent(dialect_name: str) -> Executable:
    """The inbox row, unless the envelope is already there (two deliveries of one envelope)."""
    return insert_if_absent(inbox, ("client_id", "message_id"), dialect_name)


def finished_outcome(db: Connection, client_id: str, message_id: str) -> str | None:
    """The outcome recorded when this envelope finished, or None if it never did."""
    outcome: str | None = db.execute(Q_FINISHED, {"client_id": client_id, "message_id": message_id}).scalar()
    return outcome


def mark_finished(
    db: Connection, client_id: str, message_id: str, outcome: str, *, checked: bool = False
) -> bool:
    """Record the envelope as finished, once; True when this call did, False when another delivery
    of the same envelope finished first (its outcome stands). ``checked``: the caller holds the
    record's lease and saw the envelope unfinished in this transaction's snapshot, so the plain
    (faster) insert is safe."""
    row = {"client_id": client_id, "message_id": message_id, "outcome": outcome, "finished_at": utcnow()}
    if checked:
        _MARK_FINISHED.execute(db, row)
        return True
    return int(db.execute(mark_if_absent(db.dialect.name), row).rowcount) == 1
