"""Inbound callbacks of the generic REST interface: Standard Webhooks signatures and the event payload.

Signature: ``webhook-signature: v1,<base64 HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{body}")>``
(several space-separated entries allowed), the key given as ``whsec_<base64>``. See the
``webhooks`` section of contracts/generic_rest.openapi.json.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from contracts import Action, Entity
from contracts.envelope import describe_errors
from providers.base import InboundChange, WebhookRejected

SECRET_PREFIX = "whsec_"  # noqa: S105 - the marker of the format, not a secret
_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


def decode_secret(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret; ValueError names what is wrong with it."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    encoded += "=" * (-len(encoded) % 4)  # some issuers drop the padding
    try:
        key = base64.b64decode(encoded, validate=True)
    except binascii.Error:
        raise ValueError("webhook secret must be 'whsec_' followed by base64") from None
    if not key:
        raise ValueError("webhook secret is empty")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value for one message (``v1,<base64>``)."""
    return "v1," + base64.b64encode(_mac(decode_secret(secret), msg_id, timestamp, body)).decode()


def _mac(key: bytes, msg_id: str, timestamp: int | str, body: bytes) -> bytes:
    return hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()


def verify(
    headers: Mapping[str, str],
    body: bytes,
    *,
    secret: str,
    now: float | None = None,
    tolerance_s: float = 300,
) -> str:
    """Check the signature and timestamp; return the webhook id or raise WebhookRejected."""
    lowered = {k.lower(): v for k, v in headers.items()}
    missing = [name for name in _HEADERS if not lowered.get(name)]
    if missing:
        raise WebhookRejected("missing_signature", f"webhook call lacks header(s) {', '.join(missing)}")
    msg_id, raw_timestamp, signatures = (lowered[name] for name in _HEADERS)
    if not raw_timestamp.isdigit():
        raise WebhookRejected(
            "bad_signature", f"webhook-timestamp {raw_timestamp[:40]!r} is not Unix seconds"
        )

    expected = _mac(decode_secret(secret), msg_id, raw_timestamp, body)
    if not any(hmac.compare_digest(expected, given) for given in _v1_signatures(signatures)):
        raise WebhookRejected("bad_signature", f"no valid v1 signature on webhook {msg_id!r}")

    age = (time.time() if now is None else now) - int(raw_timestamp)
    if abs(age) > tolerance_s:
        raise WebhookRejected(
            "stale_timestamp",
            f"webhook {msg_id!r} is {age:+.0f} s from our clock (tolerance {tolerance_s:g} s)",
        )
    return msg_id


def _v1_signatures(header: str) -> list[bytes]:
    """The decodable ``v1`` signatures of the header; other versions and junk are ignored."""
    decoded = []
    for entry in header.split():
        version, _, encoded = entry.partition(",")
        if version != "v1":
            continue
        try:
            decoded.append(base64.b64decode(encoded, validate=True))
        except binascii.Error:
            continue
    return decoded


class _Change(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    entity: Entity
    cw_id: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    external_id: Annotated[str, Field(min_length=1)]
    version: Annotated[int, Field(ge=1, strict=True)]
    author: str | None = None
    record: dict[str, Any] | None = None


_TYPE_PATTERN = rf"^({'|'.join(Entity)})\.({'|'.join(Action)})$"


class _Event(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    type: Annotated[str, Field(pattern=_TYPE_PATTERN)]
    timestamp: AwareDatetime
    data: _Change


def parse_event(body: bytes, *, event_id: str | None = None) -> list[InboundChange]:
    """The changes one (already verified) event reports; WebhookRejected("malformed") if unreadable."""
    try:
        event = _Event.model_validate_json(body)
    except ValidationError as exc:
        raise WebhookRejected("malformed", "webhook body: " + "; ".join(describe_errors(exc))) from None
    entity, _, action = event.type.partition(".")
    if event.data.entity != entity:
        raise WebhookRejected(
            "malformed", f"data.entity {event.data.entity.value!r} differs from type {event.type!r}"
        )
    return [
        InboundChange(
            entity=event.data.entity,
            action=Action(action),
            external_id=event.data.external_id,
            version=str(event.data.version),
            author=event.data.author,
            value=event.data.record,
            event_id=event_id,
            cw_id=event.data.cw_id,
        )
    ]


def parse_webhook(
    headers: Mapping[str, str],
    body: bytes,
    *,
    secret: str,
    now: float | None = None,
    tolerance_s: float = 300,
) -> list[InboundChange]:
    """Verify a callback (Standard Webhooks) and parse it; raise WebhookRejected with the reason."""
    event_id = verify(headers, body, secret=secret, now=now, tolerance_s=tolerance_s)
    return parse_event(body, event_id=event_id)
