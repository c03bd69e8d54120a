"""Uni Economy event-plan callbacks: signature check and parsing.

Header ``Unimicro-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, t + "." + body)>``; some tenants send
it as ``Softrig-Signature``. The payload ``{EntityName, EventType, EntityID, Entity}`` is not in the spec
(unverified), so it is read tolerantly: names in any case, one event or a list of them.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import Any

from contracts import Action, Entity, jsontext
from providers.base import InboundChange, WebhookRejected
from providers.errors import MappingError
from providers.uni_economy.inbound import stamp

SIGNATURE_HEADERS = ("unimicro-signature", "softrig-signature")
DEFAULT_TOLERANCE_S = 300.0

ENTITY_NAMES: Mapping[str, Entity] = {
    "customer": Entity.customer,
    "supplier": Entity.supplier,
    "project": Entity.project,
    "customerinvoice": Entity.invoice,
}
EVENT_TYPES: Mapping[str, Action] = {
    "create": Action.created,
    "created": Action.created,
    "update": Action.updated,
    "updated": Action.updated,
    "delete": Action.deleted,
    "deleted": Action.deleted,
}


def signature(body: bytes, secret: str, timestamp: int) -> str:
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def sign(
    body: bytes, secret: str, *, timestamp: int | None = None, header: str = "Unimicro-Signature"
) -> dict[str, str]:
    """The header a Uni event plan would send with ``body`` (for the fake and tests)."""
    stamp = int(time.time()) if timestamp is None else timestamp
    return {header: f"t={stamp},v1={signature(body, secret, stamp)}"}


def _header(headers: Mapping[str, str]) -> str:
    lowered = {k.lower(): v for k, v in headers.items()}
    for name in SIGNATURE_HEADERS:
        if lowered.get(name):
            return lowered[name]
    raise WebhookRejected("missing_signature", "no Unimicro-Signature (or Softrig-Signature) header")


def _parse_header(value: str) -> tuple[int, list[str]]:
    stamp: int | None = None
    candidates: list[str] = []
    for part in value.split(","):
        key, _, item = part.strip().partition("=")
        if key == "t" and item.isdigit():
            stamp = int(item)
        elif key == "v1" and item:
            candidates.append(item.lower())
    if stamp is None or not candidates:
        raise WebhookRejected("malformed", "signature header is not of the form t=<unix>,v1=<hex>")
    return stamp, candidates


def _tolerance(settings: Mapping[str, str]) -> float:
    raw = settings.get("webhook_tolerance_s")
    if raw in (None, ""):
        return DEFAULT_TOLERANCE_S
    try:
        return float(raw)
    except ValueError:
        raise MappingError(f"setting webhook_tolerance_s must be a number of seconds, not {raw!r}") from None


def verify(headers: Mapping[str, str], body: bytes, *, secret: str, tolerance_s: float, now: float) -> None:
    stamp, candidates = _parse_header(_header(headers))
    expected = signature(body, secret, stamp)
    # Several v1 values appear while a signing key is rotated: any one of them may match.
    if not any(hmac.compare_digest(expected, c) for c in candidates):
        raise WebhookRejected("bad_signature", "Unimicro-Signature does not match the body and secret")
    if abs(now - stamp) > tolerance_s:
        raise WebhookRejected("stale_timestamp", f"signature timestamp {stamp} is outside ±{tolerance_s:g} s")


def _field(event: Mapping[str, Any], name: str) -> Any:
    for key, value in event.items():
        if key.lower() == name:
            return value
    return None


def _change(event: Any) -> InboundChange | None:
    if not isinstance(event, dict):
        raise WebhookRejected("malformed", "each event must be a JSON object")
    entity_name, event_type, entity_id = (_field(event, n) for n in ("entityname", "eventtype", "entityid"))
    if not isinstance(entity_name, str) or entity_id in (None, ""):
        raise WebhookRejected("malformed", "event lacks EntityName or EntityID")
    entity = ENTITY_NAMES.get(entity_name.lower())
    if entity is None:
        return None  # an event plan may cover entities CW does not sync
    action = EVENT_TYPES.get(str(event_type).lower())
    if action is None:
        raise WebhookRejected("malformed", f"unknown EventType {event_type!r}")
    value = _field(event, "entity")
    value = value if isinstance(value, dict) else None
    # The same reading as the provider's push and fetch, so an echo compares equal.
    version, author = stamp(value) if value is not None else (None, None)
    event_id = _field(event, "eventid")  # not in the documented payload; used when a tenant sends one
    return InboundChange(
        entity=entity,
        action=action,
        external_id=str(entity_id),
        version=version,
        author=author,
        value=value,
        event_id=str(event_id) if event_id else None,
    )


def parse_webhook(
    headers: Mapping[str, str],
    body: bytes,
    *,
    secret: str,
    settings: Mapping[str, str] = {},
    now: float | None = None,
) -> list[InboundChange]:
    """Verify a callback and return its changes (events for entities CW does not sync are skipped)."""
    verify(
        headers,
        body,
        secret=secret,
        tolerance_s=_tolerance(settings),
        now=time.time() if now is None else now,
    )
    try:
        payload = jsontext.loads(body)
    except ValueError as exc:  # jsontext.BadText too: nested deeper than a webhook ever is
        raise WebhookRejected("malformed", f"body is not JSON: {exc}") from None
    events = payload if isinstance(payload, list) else [payload]
    return [change for change in map(_change, events) if change is not None]
