"""Handling one delivery message: begin (``steps.begin``), call the subscriber, and settle.

Every way out is an Outcome for the runner, its journal committed with the settlement: delivered
(``Complete``, the record's next delivery woken), 410 (the subscription paused), a failure with a
retry (``Complete`` of this message and, through the outbox, a new message scheduled for the next
attempt, so that the bus never counts the retries of a day), a failure that pauses the
subscription (the delivery parked), or retries used up (``DeadLetter`` with ``RetriesExhausted``:
replayable like any dead letter). A crash anywhere before the settlement leaves the message to be
delivered again and the attempt made again: at least once, the same ``webhook-id`` each time.
"""

from __future__ import annotations

import datetime as dt
import time

from config_db import deliveries
from config_db.deliveries import StoredDelivery
from config_db.leases import Lease
from config_db.secrets import SecretBox, SecretKeyError
from config_db.subscriptions import StoredSubscription
from contracts import DeadLetterReason
from worker import tracing
from worker.buses.base import Delivery, OutgoingMessage
from worker.db import Database
from worker.logging import bind_contextvars, get_logger
from worker.messaging import retry
from worker.messaging.journal import Begin
from worker.messaging.outcomes import Complete, DeadLetter, Outcome
from worker.operators.dlq import REPLAY_OF_PROPERTY
from worker.publisher import messages, schedule, steps
from worker.publisher.messages import BadDeliveryMessage
from worker.publisher.outbox import Outbox
from worker.publisher.sending import Attempt, Sender
from worker.publisher.settings import PublisherSettings
from worker.publisher.signing import Secrets

log = get_logger()


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.1f} s"


class Deliverer:
    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        sender: Sender,
        settings: PublisherSettings,
        *,
        secret_key: str | None,
        lease_s: float,
        busy_wait_s: float = 5.0,
    ) -> None:
        self.db = db
        self.outbox = outbox
        self.sender = sender
        self.settings = settings
        self._secret_key = secret_key
        self._box: SecretBox | None = None
        self._begin = Begin(db, lease_s=lease_s, wait_s=busy_wait_s)

    def _secrets(self, sub: StoredSubscription) -> Secrets:
        if self._box is None:
            self._box = SecretBox(self._secret_key)
        return Secrets.decrypt(self._box, sub.secrets, owner=f"subscription {sub.id}")

    async def handle(self, delivery: Delivery) -> Outcome:
        try:
            message = messages.parse(delivery.body)
        except BadDeliveryMessage as exc:
            return DeadLetter(DeadLetterReason.InvalidEnvelope, str(exc))
        # Every log line about this delivery names it (the runner gives each message a task of its own).
        bind_contextvars(
            transport_message_id=delivery.message_id,
            client_id=message.client_id,
            subscription_id=message.subscription_id,
            delivery_id=message.id,
        )
        replay = REPLAY_OF_PROPERTY in delivery.properties
        lease = steps.lease_for(message, delivery.message_id)
        start = await self._begin(
            lambda conn, lease_ms: steps.begin(
                conn, message, lease, replay=replay, now_ms=int(time.time() * 1000), lease_ms=lease_ms
            )
        )
        if start is None:
            return retry.busy(
                delivery, f"{message.entity} {message.record_id!r} of {message.subscription_id}"
            )
        if start.skipped is not None:
            log.info("webhook not sent", delivery_id=message.id, outcome=start.skipped)
            return Complete(start.skipped)
        d, sub, held = start.delivery, start.subscription, start.lease
        assert d is not None and sub is not None and held is not None
        try:
            secrets = self._secrets(sub)
        except SecretKeyError as exc:
            log.error(
                "cannot read the subscription's secret; it is paused", subscription_id=sub.id, error=str(exc)
            )
            now = dt.datetime.now(dt.UTC)
            return Complete("paused", steps.unreadable(d, held, str(exc), now))
        now = dt.datetime.now(dt.UTC)
        with tracing.step("deliver", **{"cwi.subscription": sub.id, "cwi.delivery_id": d.delivery_id}):
            attempt = await self.sender.send(sub.url, d.delivery_id, d.payload, secrets.signing(now))
            tracing.annotate(**{"http.response.status_code": attempt.status})
        bind_contextvars(subscriber_latency_ms=attempt.latency_ms)  # for the metrics
        log.info(
            "webhook attempt",
            delivery_id=d.delivery_id,
            subscription_id=sub.id,
            attempt=d.attempts + 1,
            status=attempt.status,
            error=attempt.error,
            latency_ms=attempt.latency_ms,
        )
        return await self._settle(d, sub, attempt, held)

    async def _wake_next(self, d: StoredDelivery) -> tuple[StoredDelivery | None, list[OutgoingMessage]]:
        """The record's next delivery if it is parked behind ``d`` (we hold the record's lease, so it
        stays so until our journal commits), with the message that wakes it."""
        found = await self.db.run(lambda conn: deliveries.next_open(conn, d))
        if found is None or found.status != deliveries.PARKED:
            return None, []
        return found, [messages.again(found, found.attempts + 1)]

    async def _settle(
        self, d: StoredDelivery, sub: StoredSubscription, attempt: Attempt, lease: Lease
    ) -> Outcome:
        if attempt.ok:
            woken, wake = await self._wake_next(d)
            journal = await self.outbox.with_messages(wake, steps.delivered(d, attempt, lease, woken))
            return Complete("delivered", journal)
        if attempt.gone:
            log.warning("subscriber unsubscribed (410); subscription paused", subscription_id=sub.id)
            return Complete("unsubscribed", steps.gone(d, attempt, lease, attempt.at))
        pause_reason = self._pause_reason(sub, attempt)
        if pause_reason is not None:
            log.warning("subscription paused", subscription_id=sub.id, reason=pause_reason)
            journal = steps.failed(
                d, attempt, lease, status=deliveries.PARKED, next_at=None, pause_reason=pause_reason
            )
            return Complete("paused", journal)
        first = d.first_attempt_at or attempt.at
        next_at = schedule.next_attempt(
            self.settings,
            failures=d.attempts + 1,
            first_attempt_at=first,
            now=attempt.at,
            retry_after=attempt.retry_after,
        )
        if next_at is None:
            woken, wake = await self._wake_next(d)
            dead = steps.failed(
                d, attempt, lease, status=deliveries.DEAD, next_at=None, pause_reason=None, wake=woken
            )
            over = _duration((attempt.at - first).total_seconds())
            description = (
                f"webhook {d.delivery_id} ({d.event_type} {d.record_id}) to {sub.url} failed "
                f"{d.attempts + 1} times over {over}: {attempt.summary}"
            )
            return DeadLetter(
                DeadLetterReason.RetriesExhausted, description, await self.outbox.with_messages(wake, dead)
            )
        again = messages.again(d, d.attempts + 2, next_at)
        retrying = steps.failed(
            d, attempt, lease, status=deliveries.RETRYING, next_at=next_at, pause_reason=None
        )
        return Complete("retry_scheduled", await self.outbox.with_messages([again], retrying))

    def _pause_reason(self, sub: StoredSubscription, attempt: Attempt) -> str | None:
        """Why the subscription is paused after this failure, or None while it is not failing long enough."""
        if attempt.throttled:
            return None
        failures = sub.failures + 1
        since = sub.failing_since or attempt.at
        s = self.settings
        if failures < s.pause_after_failures or (attempt.at - since).total_seconds() < s.pause_after_s:
            return None
        return (
            f"paused after {failures} failed attempts in a row since {since.isoformat(timespec='seconds')} "
            f"(the last: {attempt.summary}); its deliveries wait until it is resumed"
        )
