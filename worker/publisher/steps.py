"""The delivery log's steps for one attempt: what ``begin`` decides in one transaction before the
call, and the journal each way it can end, committed with the message's settlement.

``begin`` writes the row if the event's journal has not yet (Service Bus), takes the lease of the
subscription's record (one attempt at a time per subscription and record, across processes), and
decides whether to call at all: not for a finished delivery (``duplicate``), an attempt number
already used (``stale``: a second message for the same attempt), a removed subscription
(``dropped``), a paused one (``paused``: parked until it is resumed) or while an earlier delivery
of the same record is unfinished (``waiting``: parked until that one finishes, which wakes it).
A replayed dead letter starts its delivery over, unless the subscriber has since received a newer
delivery of the record (``superseded``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from config_db import deliveries, leases, subscriptions
from config_db.deliveries import StoredDelivery
from config_db.leases import Lease, LeaseKey
from config_db.subscriptions import StoredSubscription
from worker.db import Journal
from worker.publisher import messages
from worker.publisher.messages import DeliveryMessage
from worker.publisher.sending import Attempt

SIDE = "whk"
"""The lease side of a subscription's record (``provider`` holds the subscription id)."""


def lease_for(message: DeliveryMessage, holder: str) -> Lease:
    key = LeaseKey(message.client_id, message.subscription_id, message.entity, SIDE, message.record_id)
    return Lease(key, holder, uuid.uuid4().hex)


@dataclass(frozen=True, slots=True)
class Start:
    busy: bool = False
    skipped: str | None = None
    delivery: StoredDelivery | None = None
    subscription: StoredSubscription | None = None
    lease: Lease | None = None


def begin(
    conn: Connection, message: DeliveryMessage, lease: Lease, *, replay: bool, now_ms: int, lease_ms: int
) -> Start:
    deliveries.insert_if_absent(conn, message.row())
    if not leases.acquire(conn, lease, now_ms=now_ms, lease_ms=lease_ms):
        return Start(busy=True)
    found = deliveries.get(conn, message.id)
    assert found is not None
    d: StoredDelivery = found

    def skip(why: str, **change: Any) -> Start:
        if change:
            deliveries.set_fields(conn, d.delivery_id, **change)
        leases.release(conn, lease)
        return Start(skipped=why, delivery=d)

    if not d.open:
        if not (replay and d.status == deliveries.DEAD):
            return skip("duplicate")
        if deliveries.later_delivered(conn, d):
            why = "replayed after a newer delivery of the record reached the subscriber"
            return skip("superseded", status=deliveries.SUPERSEDED, last_error=why)
        deliveries.set_fields(
            conn,
            d.delivery_id,
            status=deliveries.QUEUED,
            attempts=0,
            first_attempt_at=None,
            next_attempt_at=None,
        )
        d = dataclasses.replace(d, status=deliveries.QUEUED, attempts=0, first_attempt_at=None)
    elif not replay and message.attempt != d.attempts + 1:
        return skip("stale")
    sub = subscriptions.get_locked(conn, d.subscription_id)
    if sub is None:
        return skip("dropped", status=deliveries.DROPPED, last_error="the subscription was removed")
    if sub.paused:
        return skip("paused", status=deliveries.PARKED)
    if deliveries.earlier_open(conn, d):
        return skip("waiting", status=deliveries.PARKED)
    return Start(delivery=d, subscription=sub, lease=lease)


def replay_superseded(conn: Connection, body: bytes) -> bool:
    """Whether replaying this dead-lettered delivery would send nothing (``superseded``): the
    subscriber has since received a newer delivery of the record. For the operators' dry run."""
    try:
        message = messages.parse(body)
    except messages.BadDeliveryMessage:
        return False
    found = deliveries.get(conn, message.id)
    return found is not None and deliveries.later_delivered(conn, found)


def _attempted(d: StoredDelivery, attempt: Attempt) -> dict[str, Any]:
    return {
        "attempts": d.attempts + 1,
        "first_attempt_at": d.first_attempt_at or attempt.at,
        "last_attempt_at": attempt.at,
        "next_attempt_at": None,
        "last_status": attempt.status,
        "last_error": attempt.error,
        "response_excerpt": attempt.excerpt,
        "latency_ms": attempt.latency_ms,
    }


def delivered(d: StoredDelivery, attempt: Attempt, lease: Lease, wake: StoredDelivery | None) -> Journal:
    """Delivered: the run of failures ends, and the record's next delivery, if parked, is woken."""

    def journal(conn: Connection) -> None:
        deliveries.set_fields(
            conn,
            d.delivery_id,
            status=deliveries.DELIVERED,
            delivered_at=attempt.at,
            **_attempted(d, attempt),
        )
        subscriptions.succeeded(conn, d.subscription_id)
        if wake is not None:
            deliveries.wake(conn, wake.delivery_id)
        leases.release(conn, lease)

    return journal


def gone(d: StoredDelivery, attempt: Attempt, lease: Lease, now: dt.datetime) -> Journal:
    """410: the subscription is paused (it unsubscribed); the delivery waits with its backlog."""

    def journal(conn: Connection) -> None:
        deliveries.set_fields(conn, d.delivery_id, status=deliveries.PARKED, **_attempted(d, attempt))
        why = "the endpoint answered 410 Gone (unsubscribed); resume the subscription to deliver again"
        subscriptions.pause(conn, d.subscription_id, why, now=now)
        leases.release(conn, lease)

    return journal


def failed(
    d: StoredDelivery,
    attempt: Attempt,
    lease: Lease,
    *,
    status: str,
    next_at: dt.datetime | None,
    pause_reason: str | None,
    wake: StoredDelivery | None = None,
) -> Journal:
    """A failed attempt: ``retrying`` (until ``next_at``), ``parked`` (its subscription paused now) or
    ``dead``; the subscription's run of failures grows (a 429 aside)."""

    def journal(conn: Connection) -> None:
        change = _attempted(d, attempt)
        change["next_attempt_at"] = next_at
        deliveries.set_fields(conn, d.delivery_id, status=status, **change)
        subscriptions.failed(
            conn, d.subscription_id, now=attempt.at, counts=not attempt.throttled, pause_reason=pause_reason
        )
        if wake is not None:
            deliveries.wake(conn, wake.delivery_id)
        leases.release(conn, lease)

    return journal


def unreadable(d: StoredDelivery, lease: Lease, why: str, now: dt.datetime) -> Journal:
    """The secret cannot be decrypted (CWI_SECRET_KEY): nothing is sent; the subscription is paused
    with why, the delivery parked, until the key is fixed and the subscription resumed."""

    def journal(conn: Connection) -> None:
        deliveries.set_fields(conn, d.delivery_id, status=deliveries.PARKED)
        subscriptions.pause(conn, d.subscription_id, f"{why}; fix CWI_SECRET_KEY, then resume", now=now)
        leases.release(conn, lease)

    return journal
