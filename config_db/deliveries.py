"""The delivery log of the webhooks publisher: one row per event and subscription.

A row is ``queued`` (a message for its next attempt is on the bus), ``retrying`` (a scheduled
message will try again), ``parked`` (no message: it waits for an earlier delivery of its record, or
for its paused subscription to be resumed), or finished: ``delivered``, ``dead`` (dead-lettered
after its retries), ``superseded`` (a replay older than what the subscriber already has) or
``dropped`` (its subscription was removed).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Executable, and_, exists, func, select, update

from config_db.models import webhook_deliveries
from config_db.prepared import insert_if_absent as _insert_if_absent

deliveries = webhook_deliveries

QUEUED, RETRYING, PARKED = "queued", "retrying", "parked"
DELIVERED, DEAD, SUPERSEDED, DROPPED = "delivered", "dead", "superseded", "dropped"
OPEN = (QUEUED, RETRYING, PARKED)
STATUSES = (*OPEN, DELIVERED, DEAD, SUPERSEDED, DROPPED)


@dataclass(frozen=True, slots=True)
class StoredDelivery:
    id: int
    delivery_id: str
    subscription_id: str
    client_id: str
    event_id: str
    event_type: str
    entity: str
    record_id: str
    payload: str
    status: str
    attempts: int
    created_at: dt.datetime
    first_attempt_at: dt.datetime | None
    last_attempt_at: dt.datetime | None
    next_attempt_at: dt.datetime | None
    delivered_at: dt.datetime | None
    last_status: int | None
    last_error: str | None
    response_excerpt: str | None
    latency_ms: int | None

    @property
    def open(self) -> bool:
        return self.status in OPEN

    def as_dict(self, *, payload: bool = False) -> dict[str, Any]:
        out = {
            name: (value.isoformat() if isinstance(value, dt.datetime) else value)
            for name, value in ((n, getattr(self, n)) for n in self.__slots__)
        }
        if not payload:
            del out["payload"]
        return out


def _stored(row: Any) -> StoredDelivery:
    return StoredDelivery(*row)


_ALL = list(deliveries.c)


@functools.cache
def _insert(dialect_name: str) -> Executable:
    return _insert_if_absent(deliveries, ("delivery_id",), dialect_name)


def insert_if_absent(db: Connection, row: Mapping[str, Any]) -> None:
    """The row unless its ``delivery_id`` is there already (the same event delivered twice)."""
    db.execute(_insert(db.dialect.name), dict(row))


def get(db: Connection, delivery_id: str) -> StoredDelivery | None:
    row = db.execute(select(*_ALL).where(deliveries.c.delivery_id == delivery_id)).first()
    return None if row is None else _stored(row)


def _same_record(d: StoredDelivery) -> Any:
    c = deliveries.c
    return and_(c.subscription_id == d.subscription_id, c.entity == d.entity, c.record_id == d.record_id)


def earlier_open(db: Connection, d: StoredDelivery) -> bool:
    """An earlier delivery of the same record to the same subscription is not finished."""
    c = deliveries.c
    query = select(exists().where(_same_record(d), c.id < d.id, c.status.in_(OPEN)))
    return bool(db.execute(query).scalar())


def later_delivered(db: Connection, d: StoredDelivery) -> bool:
    c = deliveries.c
    query = select(exists().where(_same_record(d), c.id > d.id, c.status == DELIVERED))
    return bool(db.execute(query).scalar())


def next_open(db: Connection, d: StoredDelivery) -> StoredDelivery | None:
    """The delivery of the same record that comes after ``d``, if it is not finished."""
    c = deliveries.c
    query = select(*_ALL).where(_same_record(d), c.id > d.id, c.status.in_(OPEN)).order_by(c.id).limit(1)
    row = db.execute(query).first()
    return None if row is None else _stored(row)


def set_fields(db: Connection, delivery_id: str, **values: Any) -> bool:
    statement = update(deliveries).where(deliveries.c.delivery_id == delivery_id).values(**values)
    return int(db.execute(statement).rowcount) == 1


def wake(db: Connection, delivery_id: str) -> bool:
    """A parked delivery gets a message again (``queued``); False when it was not parked."""
    c = deliveries.c
    statement = update(deliveries).where(c.delivery_id == delivery_id, c.status == PARKED)
    return int(db.execute(statement.values(status=QUEUED)).rowcount) == 1


def parked_heads(db: Connection, subscription_id: str) -> list[StoredDelivery]:
    """Per record, its first unfinished delivery when that one is parked (what a resume wakes)."""
    c = deliveries.c
    earlier = deliveries.alias("earlier")
    blocked = exists().where(
        earlier.c.subscription_id == c.subscription_id,
        earlier.c.entity == c.entity,
        earlier.c.record_id == c.record_id,
        earlier.c.id < c.id,
        earlier.c.status.in_(OPEN),
    )
    query = (
        select(*_ALL).where(c.subscription_id == subscription_id, c.status == PARKED, ~blocked).order_by(c.id)
    )
    return [_stored(row) for row in db.execute(query)]


def drop_open(db: Connection, subscription_id: str, reason: str) -> int:
    """Every unfinished delivery of a removed subscription: ``dropped``, with why."""
    c = deliveries.c
    statement = update(deliveries).where(c.subscription_id == subscription_id, c.status.in_(OPEN))
    return int(db.execute(statement.values(status=DROPPED, last_error=reason)).rowcount)


def log(
    db: Connection, subscription_id: str, *, status: str | None = None, limit: int = 50
) -> list[StoredDelivery]:
    """The newest deliveries first."""
    c = deliveries.c
    query = select(*_ALL).where(c.subscription_id == subscription_id)
    if status is not None:
        query = query.where(c.status == status)
    return [_stored(row) for row in db.execute(query.order_by(c.id.desc()).limit(limit))]


def counts(db: Connection, subscription_id: str) -> dict[str, int]:
    c = deliveries.c
    query = select(c.status, func.count()).where(c.subscription_id == subscription_id).group_by(c.status)
    return {status: int(n) for status, n in db.execute(query)}
