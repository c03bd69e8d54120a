"""Thin events (``data`` omitted): the record is read from CW's Query API before it is pushed."""

from __future__ import annotations

import json

from contracts import DeadLetterReason, Envelope, InvalidEnvelopeError, parse_envelope
from providers.errors import PermanentError
from worker.cw.port import CWApi


async def fill_thin_event(cw: CWApi, env: Envelope) -> Envelope | None:
    """The envelope with ``data`` read from CW; None when CW no longer has the record."""
    record = await cw.fetch(env.client_id, env.entity, env.cw_id, key=env.id)
    if record is None:
        return None
    raw = env.model_dump(mode="json", exclude_none=True) | {"data": record}
    try:
        return parse_envelope(json.dumps(raw))
    except InvalidEnvelopeError as exc:
        raise PermanentError(
            f"CW's {env.entity.value} {env.cw_id!r} is not a valid record: {exc}",
            reason=DeadLetterReason.InvalidEnvelope,
        ) from None
