"""One webhook call, from URL token to published envelopes. Never calls an ERP.

token → endpoint → enabled connection of that provider → its ``webhook_secret`` → the provider's
parser (signature, timestamp, payload) → envelopes → publish the ones not received before → receipts.
Publishing comes before the receipts: a crash between them republishes on the vendor's retry,
which the stable envelope ids and the worker's inbox make harmless; the reverse order could lose it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial

from sqlalchemy import Connection

from config_db import clients, webhooks
from contracts import Envelope, InvalidEnvelopeError
from providers.base import ConnectionSpec, InboundChange, WebhookRejected
from providers.errors import ProviderError
from providers.registry import WEBHOOK_PARSERS
from worker.buses.base import Bus
from worker.db import Database
from worker.ingress.envelopes import delivery_keys, webhook_envelopes
from worker.messaging.connections import CredentialsUnreadable, spec_from_stored
from worker.publishing import to_message

_STATUS = {"missing_signature": 401, "bad_signature": 401, "stale_timestamp": 401, "malformed": 400}


class Refused(Exception):
    """A call answered with an error status; ``reason`` labels the rejection metric."""

    def __init__(self, status: int, reason: str, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.headers = dict(headers or {})


@dataclass(frozen=True, slots=True)
class Accepted:
    client_id: str
    published: list[str]  # envelope ids published by this call
    duplicates: list[str]  # envelope ids of deliveries published before

    @property
    def duplicate(self) -> bool:
        """Every change of the call was published before (a repeat delivery)."""
        return bool(self.duplicates) and not self.published


def find_connection(db: Connection, token: str, provider: str) -> clients.StoredConnection | None:
    """The enabled connection a token opens on this provider's path, or None (all answered 404 alike)."""
    endpoint = webhooks.find_endpoint(db, token)
    if endpoint is None or endpoint.provider != provider:
        return None
    stored = clients.get_connection(db, endpoint.client_id)
    if stored is None or not stored.enabled or stored.kind != provider:
        return None
    return stored


async def lookup(db: Database, secret_key: str | None, token: str, provider: str) -> ConnectionSpec:
    """The connection a call is for, its credentials decrypted; Refused(404) for any unknown URL."""
    stored = await db.run(partial(find_connection, token=token, provider=provider))
    if stored is None:
        raise Refused(404, "unknown_token", f"no enabled {provider} webhook endpoint has this URL")
    try:
        return spec_from_stored(stored, secret_key)
    except CredentialsUnreadable as exc:  # our key, not the ERP's fault: it retries once it is fixed
        raise Refused(503, "misconfigured", str(exc), headers={"Retry-After": "60"}) from None
    except ProviderError as exc:
        raise Refused(500, "misconfigured", f"cannot read the connection's credentials: {exc}") from None


def parse(spec: ConnectionSpec, headers: Mapping[str, str], body: bytes) -> list[InboundChange]:
    secret = spec.credentials.get(webhooks.SECRET_CREDENTIAL)
    if not secret:
        raise Refused(
            401,
            "bad_signature",
            "no webhook secret is configured for this connection: run `cwi webhooks url`",
        )
    parser = WEBHOOK_PARSERS[spec.kind]
    try:
        return parser(headers, body, secret=secret, settings=spec.settings)
    except WebhookRejected as exc:
        raise Refused(_STATUS.get(exc.reason, 400), exc.reason, str(exc)) from None
    except (ProviderError, ValueError) as exc:
        # A connection setting the parser needs is unusable: our side, not the caller's.
        raise Refused(500, "misconfigured", f"the connection's webhook settings: {exc}") from None


def envelopes_of(
    spec: ConnectionSpec, changes: Sequence[InboundChange], keys: Sequence[str]
) -> list[Envelope]:
    try:
        return webhook_envelopes(
            spec.client_id, spec.kind, changes, keys=keys, received_at=dt.datetime.now(dt.UTC)
        )
    except InvalidEnvelopeError as exc:
        raise Refused(400, "malformed", f"webhook change cannot be an envelope: {exc}") from None


async def publish_new(
    db: Database, bus: Bus, spec: ConnectionSpec, changes: Sequence[InboundChange], body: bytes
) -> Accepted:
    """Publish the changes whose delivery was not received before; then record their receipts."""
    delivery = delivery_keys(changes, body)  # the body hashed once for both
    envelopes = envelopes_of(spec, changes, delivery)
    keys = [webhooks.receipt_key(key) for key in delivery]
    seen = await db.run(
        partial(webhooks.received_keys, client_id=spec.client_id, provider=spec.kind, keys=keys)
    )
    fresh = [(env, key) for env, key in zip(envelopes, keys, strict=True) if key not in seen]
    if fresh:
        await bus.publish([to_message(env) for env, _ in fresh])
        await db.run(
            partial(
                webhooks.record_receipts,
                client_id=spec.client_id,
                provider=spec.kind,
                keys=[key for _, key in fresh],
            )
        )
    published = [env.id for env, _ in fresh]
    return Accepted(spec.client_id, published, [env.id for env in envelopes if env.id not in published])
