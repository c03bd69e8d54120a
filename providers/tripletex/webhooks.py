"""Verification and parsing of Tripletex webhook callbacks.

A subscription created with ``hmacSharedSecret`` signs each callback: header ``x-request-signature``
= base64(HMAC-SHA512(secret, idempotency-key header + "&" + body)), as the spec's Subscription
schema states. The scheme has no timestamp, so there is no staleness check; the idempotency key is
the event id the worker deduplicates on.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping

from contracts import Action, Entity, jsontext
from providers.base import InboundChange, WebhookRejected
from providers.tripletex.mapping import last_author

SIGNATURE_HEADER = "x-request-signature"
IDEMPOTENCY_HEADER = "idempotency-key"

_ACTIONS = {"create": Action.created, "update": Action.updated, "delete": Action.deleted}
_ENTITIES = {"customer": Entity.customer, "supplier": Entity.supplier, "project": Entity.project}


def sign(body: bytes, secret: str, *, idempotency_key: str) -> str:
    """The ``x-request-signature`` value Tripletex sends for ``body``."""
    digest = hmac.new(secret.encode(), idempotency_key.encode() + b"&" + body, hashlib.sha512).digest()
    return base64.b64encode(digest).decode()


def signed_headers(body: bytes, secret: str, *, idempotency_key: str) -> dict[str, str]:
    """The headers of a signed callback (what the fake ERP sends)."""
    return {
        "Content-Type": "application/json",
        IDEMPOTENCY_HEADER: idempotency_key,
        SIGNATURE_HEADER: sign(body, secret, idempotency_key=idempotency_key),
    }


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def verify(headers: Mapping[str, str], body: bytes, secret: str) -> str:
    """Check the signature; return the idempotency key (the event id)."""
    signature = _header(headers, SIGNATURE_HEADER)
    if not signature:
        raise WebhookRejected("missing_signature", f"no {SIGNATURE_HEADER} header")
    key = _header(headers, IDEMPOTENCY_HEADER)
    if not key:
        raise WebhookRejected("malformed", f"no {IDEMPOTENCY_HEADER} header, which the signature covers")
    expected = sign(body, secret, idempotency_key=key)
    if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
        raise WebhookRejected("bad_signature", f"{SIGNATURE_HEADER} does not match the body")
    return key


def _entity_action(event: str) -> tuple[Entity, Action] | None:
    """``customer.update`` → (customer, updated); ``invoice.charged`` is a created invoice."""
    if event == "invoice.charged":
        return Entity.invoice, Action.created
    subject, _, verb = event.partition(".")
    if subject in _ENTITIES and verb in _ACTIONS:
        return _ENTITIES[subject], _ACTIONS[verb]
    return None


def parse_webhook(
    headers: Mapping[str, str],
    body: bytes,
    *,
    secret: str,
    settings: Mapping[str, str] | None = None,
    now: float | None = None,
) -> list[InboundChange]:
    """Verify and parse one callback; events for things CW does not sync give an empty list.

    ``settings`` and ``now`` are accepted for the common signature; this scheme needs neither.
    """
    event_id = verify(headers, body, secret)
    try:
        payload = jsontext.loads(body)
    except ValueError as exc:  # jsontext.BadText too: nested deeper than a webhook ever is
        raise WebhookRejected("malformed", f"body is not JSON: {exc}") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("event"), str):
        raise WebhookRejected("malformed", "body has no event")
    if not isinstance(payload.get("id"), int) or isinstance(payload["id"], bool):
        raise WebhookRejected("malformed", "body has no numeric id")
    kind = _entity_action(payload["event"])
    if kind is None:
        return []
    value = payload.get("value")
    if value is not None and not isinstance(value, dict):
        raise WebhookRejected("malformed", "value is neither an object nor null")
    version = value.get("version") if value else None
    return [
        InboundChange(
            entity=kind[0],
            action=kind[1],
            external_id=str(payload["id"]),
            version=None if version is None else str(version),
            author=last_author(value) if value else None,
            value=value,
            event_id=event_id,
        )
    ]
