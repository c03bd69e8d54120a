"""Webhook changes → bus envelopes: the one shape the listener publishes and the worker reads.

Envelope ids are derived from the vendor's delivery, so the same delivery received twice yields the
same ids, and the worker's inbox makes the second copy a no-op even if it reaches the bus.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence

from contracts import Envelope, ExternalChange, Source, parse_envelope
from providers.base import InboundChange


def delivery_key(change: InboundChange, body: bytes) -> str:
    """The vendor's event id when it sends one, else a digest of the call's body."""
    return change.event_id or "sha256:" + hashlib.sha256(body).hexdigest()


def envelope_id(client_id: str, provider: str, key: str, index: int) -> str:
    digest = hashlib.sha256(f"{client_id}\x1f{provider}\x1f{key}\x1f{index}".encode()).hexdigest()
    return f"wh-{digest[:40]}"


def webhook_envelopes(
    client_id: str,
    provider: str,
    changes: Sequence[InboundChange],
    *,
    body: bytes,
    received_at: dt.datetime,
) -> list[Envelope]:
    """One ``source: "webhook"`` envelope per change the ERP reported in one call."""
    envelopes = []
    for index, change in enumerate(changes):
        external = ExternalChange(
            provider=provider,
            external_id=change.external_id,
            version=change.version,
            author=change.author,
            event_id=change.event_id,
            value=dict(change.value) if change.value is not None else None,
        )
        raw = {
            "id": envelope_id(client_id, provider, delivery_key(change, body), index),
            "client_id": client_id,
            "type": f"{change.entity.value}.{change.action.value}",
            "source": Source.webhook.value,
            "occurred_at": received_at.isoformat(),
            "record_id": change.cw_id,
            "external": external.model_dump(),
        }
        envelopes.append(_validated(raw))
    return envelopes


def _validated(raw: Mapping[str, object]) -> Envelope:
    return parse_envelope(json.dumps(raw, default=str))
