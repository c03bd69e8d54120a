"""Third parties' webhook subscriptions: stored with their secrets still ciphertext."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from config_db.models import subscriptions, utcnow
from config_db.secrets import SecretBox

ACTIVE = "active"
PAUSED = "paused"


@dataclass(frozen=True, slots=True)
class StoredSubscription:
    id: str
    client_id: str
    url: str
    events: Sequence[str]
    fields: Sequence[str]
    description: str
    secrets: str  # ciphertext
    status: str
    paused_reason: str | None
    paused_at: dt.datetime | None
    failures: int
    failing_since: dt.datetime | None
    created_at: dt.datetime

    @property
    def paused(self) -> bool:
        return self.status == PAUSED


_COLUMNS = [c for c in subscriptions.c if c.name != "updated_at"]


def _stored(row: Any) -> StoredSubscription:
    return StoredSubscription(**{c.name: getattr(row, c.name) for c in _COLUMNS})


def add(
    db: Connection,
    *,
    id: str,
    client_id: str,
    url: str,
    events: Sequence[str],
    fields: Sequence[str],
    description: str,
    secrets: str,
) -> None:
    now = utcnow()
    db.execute(
        insert(subscriptions).values(
            id=id,
            client_id=client_id,
            url=url,
            events=list(events),
            fields=list(fields),
            description=description[:255],
            secrets=secrets,
            status=ACTIVE,
            failures=0,
            created_at=now,
            updated_at=now,
        )
    )


def get(db: Connection, subscription_id: str) -> StoredSubscription | None:
    row = db.execute(select(*_COLUMNS).where(subscriptions.c.id == subscription_id)).first()
    return None if row is None else _stored(row)


def get_locked(db: Connection, subscription_id: str) -> StoredSubscription | None:
    """``get``, holding the row until the transaction ends where the database can (PostgreSQL): a
    delivery deciding to wait for a paused subscription and a resume of it do not cross."""
    query = select(*_COLUMNS).where(subscriptions.c.id == subscription_id).with_for_update()
    row = db.execute(query).first()
    return None if row is None else _stored(row)


def listed(db: Connection, client_id: str | None = None) -> list[StoredSubscription]:
    query = select(*_COLUMNS).order_by(subscriptions.c.client_id, subscriptions.c.created_at)
    if client_id is not None:
        query = query.where(subscriptions.c.client_id == client_id)
    return [_stored(row) for row in db.execute(query)]


def _set(db: Connection, subscription_id: str, **values: Any) -> bool:
    statement = update(subscriptions).where(subscriptions.c.id == subscription_id)
    return int(db.execute(statement.values(**values, updated_at=utcnow())).rowcount) == 1


def set_secrets(db: Connection, subscription_id: str, secrets: str) -> bool:
    return _set(db, subscription_id, secrets=secrets)


def rotate_key(db: Connection, subscription_id: str, box: SecretBox) -> bool:
    """Re-encrypt one subscription's signing secrets with the newest key (``cwi secrets rotate``);
    False when they already were. Its row held meanwhile: a secret rotated at the same moment is not
    written over with the old one."""
    stored = get_locked(db, subscription_id)
    if stored is None or box.is_current(stored.secrets):
        return False
    return set_secrets(
        db, subscription_id, box.rotate(stored.secrets, owner=f"subscription {subscription_id}")
    )


def pause(db: Connection, subscription_id: str, reason: str, *, now: dt.datetime) -> bool:
    """Paused with ``reason``; its deliveries wait (kept) until it is resumed."""
    return _set(db, subscription_id, status=PAUSED, paused_reason=reason, paused_at=now)


def resume(db: Connection, subscription_id: str) -> bool:
    return _set(
        db, subscription_id, status=ACTIVE, paused_reason=None, paused_at=None, failures=0, failing_since=None
    )


def remove(db: Connection, subscription_id: str) -> bool:
    return int(db.execute(delete(subscriptions).where(subscriptions.c.id == subscription_id)).rowcount) == 1


def succeeded(db: Connection, subscription_id: str) -> None:
    """A delivery went through: the run of failures is over."""
    c = subscriptions.c
    db.execute(
        update(subscriptions)
        .where(c.id == subscription_id, c.failures > 0)
        .values(failures=0, failing_since=None, updated_at=utcnow())
    )


def failed(
    db: Connection, subscription_id: str, *, now: dt.datetime, counts: bool, pause_reason: str | None
) -> None:
    """An attempt failed: one more in the run of failures (``counts``: a throttling answer does not
    count), and paused with ``pause_reason`` when the caller decided the run is long enough."""
    c = subscriptions.c
    values: dict[str, Any] = {"updated_at": now}
    if counts:
        started = update(subscriptions).where(c.id == subscription_id, c.failing_since.is_(None))
        db.execute(started.values(failing_since=now))
        values["failures"] = c.failures + 1
    if pause_reason is not None:
        values.update(status=PAUSED, paused_reason=pause_reason, paused_at=now)
    db.execute(update(subscriptions).where(c.id == subscription_id).values(**values))
