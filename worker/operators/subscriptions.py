"""Webhook subscriptions of third parties: the one implementation behind ``cwi subscriptions``, the
admin API and the console.

Adding one checks the event patterns, the URL (https, no address in our own network: the same
rules the delivery connector enforces) and the client, and answers the signing secret once.
Rotating keeps the old secret signing beside the new one for a grace period. Pausing keeps the
deliveries (they are parked); resuming wakes, for each record, its first waiting delivery (the
others follow it in order). Removing drops what was still waiting; the delivery log stays.
Adding, rotating and removing need the admin role, pausing and resuming operator; every change
is audited. Secrets never appear in a view.
"""

from __future__ import annotations

import datetime as dt
import secrets as random_tokens
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from config_db import clients, deliveries, subscriptions
from config_db.models import SUBSCRIPTION_DESCRIPTION_LENGTH, SUBSCRIPTION_URL_LENGTH
from config_db.secrets import SecretBox, SecretKeyError
from config_db.subscriptions import StoredSubscription
from worker.buses.base import Bus
from worker.db import Database
from worker.operators.actors import Actor, audit
from worker.publisher import guard, messages
from worker.publisher.events import PatternError, check_patterns
from worker.publisher.guard import EndpointRefused
from worker.publisher.outbox import Outbox
from worker.publisher.settings import PublisherSettings, load_publisher_settings
from worker.publisher.signing import Secrets, new_secrets
from worker.settings import YEAR_S, Settings

MAX_LOG = 1000


class SubscriptionError(Exception):
    """Bad input or a missing precondition, said in one line."""


class NoSuchSubscription(SubscriptionError):
    pass


def view(sub: StoredSubscription, counts: dict[str, int] | None = None) -> dict[str, Any]:
    """What operators see of a subscription: everything but its secrets."""
    out: dict[str, Any] = {
        "id": sub.id,
        "client_id": sub.client_id,
        "url": sub.url,
        "events": list(sub.events),
        "fields": list(sub.fields),
        "description": sub.description,
        "status": sub.status,
        "paused_reason": sub.paused_reason,
        "paused_at": sub.paused_at.isoformat() if sub.paused_at else None,
        "failures": sub.failures,
        "failing_since": sub.failing_since.isoformat() if sub.failing_since else None,
        "created_at": sub.created_at.isoformat(),
    }
    if counts is not None:
        out["deliveries"] = counts
    return out


@dataclass(frozen=True, slots=True)
class Issued:
    """A subscription with the secret it signs with now (shown once: at creation and rotation)."""

    subscription: dict[str, Any]
    secret: str
    previous_valid_until: str | None = None


class Subscriptions:
    def __init__(
        self, db: Database, bus: Bus, settings: Settings, publisher: PublisherSettings | None = None
    ) -> None:
        self.db = db
        self.bus = bus
        self.settings = settings
        self.publisher = publisher or load_publisher_settings()

    async def _audit(self, actor: Actor, action: str, sub: StoredSubscription, **what: Any) -> None:
        await audit(self.db, actor, action, client_id=sub.client_id, subscription=sub.id, **what)

    def _box(self) -> SecretBox:
        try:
            return SecretBox(self.settings.secret)
        except SecretKeyError as exc:
            raise SubscriptionError(str(exc)) from None

    async def _get(self, subscription_id: str) -> StoredSubscription:
        found = await self.db.run(lambda conn: subscriptions.get(conn, subscription_id))
        if found is None:
            raise NoSuchSubscription(f"no subscription {subscription_id!r} (cwi subscriptions list)")
        return found

    async def check_url(self, url: str) -> str:
        p = self.publisher
        try:
            parsed = guard.check_url(url, allow_http=p.allow_http, allow_private=p.allow_private)
            await guard.check_resolved(parsed.host or "", allow_private=p.allow_private)
        except EndpointRefused as exc:
            raise SubscriptionError(str(exc)) from None
        return str(parsed)

    async def add(
        self,
        actor: Actor,
        client_id: str,
        url: str,
        events: Sequence[str],
        fields: Sequence[str] = (),
        description: str = "",
    ) -> Issued:
        actor.require("admin", "adding a subscription")
        try:
            patterns = check_patterns(events)
        except PatternError as exc:
            raise SubscriptionError(str(exc)) from None
        if len(description.strip()) > SUBSCRIPTION_DESCRIPTION_LENGTH:
            raise SubscriptionError(
                f"the description is longer than {SUBSCRIPTION_DESCRIPTION_LENGTH} characters"
            )
        checked_url = await self.check_url(url.strip())
        if len(checked_url) > SUBSCRIPTION_URL_LENGTH:
            raise SubscriptionError(f"the endpoint URL is longer than {SUBSCRIPTION_URL_LENGTH} characters")
        wanted = [f.strip() for f in fields if f.strip()]
        box = self._box()
        secrets = new_secrets()
        subscription_id = "sub_" + random_tokens.token_hex(8)

        def work(conn: Any) -> StoredSubscription | None:
            if conn.execute(clients.q_client(client_id)).first() is None:
                return None
            subscriptions.add(
                conn,
                id=subscription_id,
                client_id=client_id,
                url=checked_url,
                events=patterns,
                fields=wanted,
                description=description.strip(),
                secrets=secrets.encrypt(box),
            )
            return subscriptions.get(conn, subscription_id)

        added = await self.db.run(work)
        if added is None:
            raise SubscriptionError(f"no client {client_id!r}: add it with `cwi clients add`")
        await self._audit(actor, "subscription_added", added, url=added.url)
        return Issued(view(added), secrets.current)

    async def listed(self, client_id: str | None = None) -> list[dict[str, Any]]:
        def work(conn: Any) -> list[dict[str, Any]]:
            found = subscriptions.listed(conn, client_id)
            return [view(sub, deliveries.counts(conn, sub.id)) for sub in found]

        return await self.db.run(work)

    async def get(self, subscription_id: str) -> dict[str, Any]:
        sub = await self._get(subscription_id)
        counts = await self.db.run(lambda conn: deliveries.counts(conn, subscription_id))
        return view(sub, counts)

    async def rotate_secret(self, actor: Actor, subscription_id: str, grace_s: float | None = None) -> Issued:
        actor.require("admin", "rotating a subscription's secret")
        box = self._box()
        grace = self.publisher.rotation_grace_s if grace_s is None else grace_s
        if grace < 0:
            raise SubscriptionError("the grace period cannot be negative")
        if not grace <= YEAR_S:  # NaN too: the old secret's end must be a date
            raise SubscriptionError(
                f"the grace period must be at most 365 days ({YEAR_S} s), not {grace:g} s"
            )
        now = dt.datetime.now(dt.UTC)

        def work(conn: Any) -> tuple[StoredSubscription, Secrets] | None:
            sub = subscriptions.get_locked(conn, subscription_id)  # not crossed by `cwi secrets rotate`
            if sub is None:
                return None
            rotated = Secrets.decrypt(box, sub.secrets, owner=f"subscription {sub.id}").rotated(now, grace)
            subscriptions.set_secrets(conn, sub.id, rotated.encrypt(box))
            return sub, rotated

        try:
            done = await self.db.run(work)
        except SecretKeyError as exc:
            raise SubscriptionError(str(exc)) from None
        if done is None:
            raise NoSuchSubscription(f"no subscription {subscription_id!r} (cwi subscriptions list)")
        sub, rotated = done
        until = rotated.previous_until.isoformat() if rotated.previous_until else None
        await self._audit(actor, "subscription_rotated", sub, grace_s=grace)
        return Issued(view(sub), rotated.current, until)

    async def pause(self, actor: Actor, subscription_id: str) -> dict[str, Any]:
        actor.require("operator", "pausing a subscription")
        sub = await self._get(subscription_id)
        now = dt.datetime.now(dt.UTC)
        why = f"paused by {actor.label}"
        await self.db.run(lambda conn: subscriptions.pause(conn, subscription_id, why, now=now))
        await self._audit(actor, "subscription_paused", sub)
        return await self.get(subscription_id)

    async def resume(self, actor: Actor, subscription_id: str) -> dict[str, Any]:
        """Active again; each record's first parked delivery gets a message (the rest follow it)."""
        actor.require("operator", "resuming a subscription")
        sub = await self._get(subscription_id)
        await self.db.run(lambda conn: subscriptions.resume(conn, subscription_id))
        # Only now, with the subscription active, can no delivery park itself for the pause.
        heads = await self.db.run(lambda conn: deliveries.parked_heads(conn, subscription_id))
        wake = [messages.again(d, d.attempts + 1) for d in heads]

        def woken(conn: Any) -> None:
            for d in heads:
                deliveries.wake(conn, d.delivery_id)

        await Outbox(self.bus).commit(self.db, wake, woken)
        await self._audit(
            actor,
            "subscription_resumed",
            sub,
            woken=len(heads),
        )
        return {**await self.get(subscription_id), "woken": len(heads)}

    async def remove(self, actor: Actor, subscription_id: str) -> int:
        """Removed; its waiting deliveries are ``dropped`` (how many is returned). The log stays."""
        actor.require("admin", "removing a subscription")
        sub = await self._get(subscription_id)

        def work(conn: Any) -> int:
            subscriptions.remove(conn, subscription_id)
            return deliveries.drop_open(conn, subscription_id, "the subscription was removed")

        dropped = await self.db.run(work)
        await self._audit(actor, "subscription_removed", sub, dropped=dropped)
        return dropped

    async def log(
        self, subscription_id: str, *, status: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """The delivery log, newest first: status, attempts, latency, the last answer's start."""
        if status is not None and status not in deliveries.STATUSES:
            raise SubscriptionError(f"status must be one of {', '.join(deliveries.STATUSES)}, not {status!r}")
        if not 1 <= limit <= MAX_LOG:
            raise SubscriptionError(f"limit must be between 1 and {MAX_LOG}")
        found = await self.db.run(
            lambda conn: deliveries.log(conn, subscription_id, status=status, limit=limit)
        )
        if not found:
            await self._get(
                subscription_id
            )  # none yet, or no such subscription (a removed one keeps its log)
        return [d.as_dict() for d in found]
