"""Visma.net ERP webhooks: base64 HMAC-SHA256 of the raw body in one header, then a tolerant parse.

Documented by Visma: subscriptions live in the Visma Developer Portal (not the API), and the
signature is HMAC-SHA256 of the UTF-8 body with the subscription's secret, base64-encoded.

*Unverified*, hence settings and a tolerant reader:

- the header name: setting ``webhook_signature_header``, default ``X-Visma-Signature``;
- the payload. Assumed: one JSON object, or a list of them, like
  ``{"tenantId": "…", "event": "Customer.Created", "entityId": "10001", "timestamp": "…"}``.
  Entity and action may come in one field (``event``/``eventType``/``type``/``topic``, written
  ``Customer.Created``, ``customer:created``, ``CustomerCreated`` …) or apart (``entity``/
  ``entityType`` plus ``event``/``action``), using the Developer Portal's names ("Customer",
  "Supplier", "Project", "PM Project", "AR Invoice"; "Created", "Updated", "Changed",
  "Status Changed", "Deleted"). The id is ``entityId`` (else ``id``), at the top or inside a
  ``data``/``payload``/``value`` object.

A payload we cannot map to an entity, an action and an id is rejected as ``malformed``. The
payload's timestamp is enforced only when setting ``webhook_tolerance_seconds`` is given (Visma can
resend old notifications), and its ``tenantId`` must match setting ``tenant_id`` when both exist.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
import time
from collections.abc import Mapping
from typing import Any

from contracts import Action, Entity, jsontext
from providers.base import InboundChange, WebhookRejected

DEFAULT_SIGNATURE_HEADER = "X-Visma-Signature"

_ENTITIES = {
    "customer": Entity.customer,
    "supplier": Entity.supplier,
    "vendor": Entity.supplier,
    "project": Entity.project,
    "pmproject": Entity.project,
    "arinvoice": Entity.invoice,
    "customerinvoice": Entity.invoice,
    "invoice": Entity.invoice,
}
# Longest first, so "statuschanged" wins over "changed".
_ACTIONS = {
    "actiontriggered": Action.updated,
    "statuschanged": Action.updated,
    "created": Action.created,
    "inserted": Action.created,
    "updated": Action.updated,
    "modified": Action.updated,
    "changed": Action.updated,
    "deleted": Action.deleted,
    "removed": Action.deleted,
    "create": Action.created,
    "update": Action.updated,
    "delete": Action.deleted,
}
_NESTED = ("data", "payload", "value", "entity")


def sign(body: bytes, secret: str) -> str:
    """The signature header's value for ``body``: base64(HMAC-SHA256(secret, body))."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def signed_headers(body: bytes, secret: str, *, header: str = DEFAULT_SIGNATURE_HEADER) -> dict[str, str]:
    """Headers of a signed callback, as the fake ERP sends them."""
    return {"Content-Type": "application/json", header: sign(body, secret)}


def verify(headers: Mapping[str, str], body: bytes, *, secret: str, settings: Mapping[str, str]) -> None:
    name = settings.get("webhook_signature_header") or DEFAULT_SIGNATURE_HEADER
    given = next((v for k, v in headers.items() if k.lower() == name.lower()), "").strip()
    if not given:
        raise WebhookRejected("missing_signature", f"webhook call lacks its {name} header")
    if not secret:
        raise WebhookRejected("bad_signature", "no webhook secret is configured for this connection")
    given = given.removeprefix("sha256=")
    if not hmac.compare_digest(given.encode(), sign(body, secret).encode()):
        raise WebhookRejected("bad_signature", f"{name} does not match the body")


def parse_webhook(
    headers: Mapping[str, str],
    body: bytes,
    *,
    secret: str,
    settings: Mapping[str, str] = {},
    now: float | None = None,
) -> list[InboundChange]:
    """Verify a Visma.net callback and read its changes; WebhookRejected with the reason otherwise."""
    verify(headers, body, secret=secret, settings=settings)
    try:
        payload = jsontext.loads(body)
    except ValueError as exc:  # jsontext.BadText too: nested deeper than a webhook ever is
        raise WebhookRejected("malformed", f"webhook body is not JSON: {exc}") from None
    items = payload if isinstance(payload, list) else [payload]
    if not items or not all(isinstance(item, dict) for item in items):
        raise WebhookRejected("malformed", "webhook body is not a JSON object or a list of objects")
    changes = []
    for item in items:
        fields = {k.lower(): v for k, v in item.items()}
        _check_tenant(fields, settings)
        _check_fresh(fields, settings, time.time() if now is None else now)
        changes.append(_change(fields))
    return changes


def _text(fields: Mapping[str, Any], *names: str) -> str | None:
    for name in names:
        value = fields.get(name)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
            return str(value).strip()
    return None


def _compact(text: str | None) -> str:
    return re.sub(r"[^a-z0-9]", "", (text or "").lower())


def _entity_action(fields: Mapping[str, Any]) -> tuple[Entity, Action]:
    entity = _compact(_text(fields, "entity", "entitytype", "entityname", "resource", "objecttype"))
    event = _compact(_text(fields, "event", "eventtype", "eventname", "type", "topic", "messagetype"))
    event += _compact(_text(fields, "action", "operation"))
    combined = event if event.startswith(entity) else entity + event
    for suffix, action in _ACTIONS.items():
        if combined.endswith(suffix) and combined.removesuffix(suffix) in _ENTITIES:
            return _ENTITIES[combined.removesuffix(suffix)], action
    shown = {
        k: fields[k] for k in ("entity", "entitytype", "event", "eventtype", "type", "topic") if k in fields
    }
    raise WebhookRejected(
        "malformed", f"cannot map webhook event {shown or 'without an event name'} to a CW entity"
    )


def _change(fields: Mapping[str, Any]) -> InboundChange:
    entity, action = _entity_action(fields)
    nested = next((fields[k] for k in _NESTED if isinstance(fields.get(k), dict)), None)
    inner = {k.lower(): v for k, v in nested.items()} if nested else {}
    external_id = _text(fields, "entityid", "entitykey", "id") or _text(inner, "entityid", "number", "id")
    if external_id is None:
        raise WebhookRejected("malformed", f"{entity.value} webhook names no entity id (entityId or id)")
    event_id = _text(fields, "eventid", "messageid", "notificationid")
    if event_id is None and "entityid" in fields:
        event_id = _text(fields, "id")
    return InboundChange(
        entity=entity,
        action=action,
        external_id=external_id,
        version=_text(fields, "version", "lastmodifieddatetime")
        or _text(inner, "version", "lastmodifieddatetime"),
        author=_text(fields, "changedby", "modifiedby", "username", "user"),
        value=nested,
        event_id=event_id,
    )


def _check_tenant(fields: Mapping[str, Any], settings: Mapping[str, str]) -> None:
    ours, theirs = settings.get("tenant_id"), _text(fields, "tenantid", "tenant")
    if ours and theirs and ours.lower() != theirs.lower():
        raise WebhookRejected(
            "malformed", f"webhook is for tenant {theirs}, this connection is tenant {ours}"
        )


def _check_fresh(fields: Mapping[str, Any], settings: Mapping[str, str], now: float) -> None:
    raw_tolerance = settings.get("webhook_tolerance_seconds")
    stamp = _text(fields, "timestamp", "eventtime", "occurredat", "time")
    if not raw_tolerance or stamp is None:
        return
    try:
        tolerance = float(raw_tolerance)
    except ValueError:
        raise ValueError(
            f"setting webhook_tolerance_seconds must be a number, not {raw_tolerance!r}"
        ) from None
    sent = _epoch(stamp)
    if sent is None:
        raise WebhookRejected(
            "malformed", f"webhook timestamp {stamp[:40]!r} is neither ISO 8601 nor Unix time"
        )
    age = now - sent
    if abs(age) > tolerance:
        raise WebhookRejected(
            "stale_timestamp", f"webhook is {age:+.0f} s from our clock (tolerance {tolerance:g} s)"
        )


def _epoch(stamp: str) -> float | None:
    try:
        value = float(stamp)
        return value / 1000 if value > 1e11 else value  # milliseconds
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()
