"""The inbox: envelope ids whose processing finished, so a redelivery has no effect."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Insert, Select, bindparam, insert, select

from config_db.models import InboxEntry, table_of, utcnow
from config_db.prepared import Prepared

inbox = table_of(InboxEntry)

Q_FINISHED: Select[Any] = select(inbox.c.outcome).where(
    inbox.c.client_id == bindparam("client_id"), inbox.c.message_id == bindparam("message_id")
)
S_MARK_FINISHED: Insert = insert(inbox)
_MARK_FINISHED = Prepared(S_MARK_FINISHED, column_keys=["client_id", "message_id", "outcome", "finished_at"])


def finished_outcome(db: Connection, client_id: str, message_id: str) -> str | None:
    """The outcome recorded when this envelope finished, or None if it never did."""
    outcome: str | None = db.execute(Q_FINISHED, {"client_id": client_id, "message_id": message_id}).scalar()
    return outcome


def mark_finished(
    db: Connection, client_id: str, message_id: str, outcome: str, *, checked: bool = False
) -> None:
    """Record the envelope as finished. ``checked``: the caller saw it unfinished in this message's
    processing (a client's messages are handed out one at a time), so no look-up is needed."""
    if checked or finished_outcome(db, client_id, message_id) is None:
        row = {"client_id": client_id, "message_id": message_id, "outcome": outcome, "finished_at": utcnow()}
        _MARK_FINISHED.execute(db, row)
