"""Keeping the values each message wrote, for the console's life of a record.

A wrapper around the worker's handler (as ``worker.metrics.MeteredPipeline`` is): when a message
completes with a write (created, updated, deleted, unchanged, inbound), the CW values it carried
are added to its journal, so they are committed in the same transaction as its outcome. Secrets
are redacted first (by key name, and every decrypted credential value).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from sqlalchemy import Connection

from config_db import values
from config_db.models import utcnow
from worker.buses.base import Delivery
from worker.db import Database, Journal
from worker.logging import redactor
from worker.messaging.outcomes import Complete, Outcome
from worker.messaging.runner import Handler

WRITES = frozenset({"created", "updated", "deleted", "unchanged", "inbound"})
MAX_DATA = 16_000  # characters of one record's values kept


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def values_of(body: bytes) -> dict[str, Any] | None:
    """client, message, entity, CW id, number, name and the redacted values; None without values."""
    try:
        env = json.loads(body)
    except ValueError:
        return None
    if not isinstance(env, dict):
        return None
    data = env.get("data")
    external = env.get("external")
    if not isinstance(data, dict) and isinstance(external, dict) and isinstance(external.get("value"), dict):
        data = external["value"]
    cw_id = _text(data.get("id")) if isinstance(data, dict) else None
    cw_id = cw_id or _text(env.get("record_id"))
    client_id, message_id, kind = _text(env.get("client_id")), _text(env.get("id")), _text(env.get("type"))
    if not (client_id and message_id and kind and cw_id):
        return None
    shown = redactor.redact(data) if isinstance(data, dict) else None
    text = json.dumps(shown, ensure_ascii=False, default=str) if shown is not None else "null"
    return {
        "client_id": client_id,
        "message_id": message_id,
        "entity": kind.partition(".")[0],
        "cw_id": cw_id,
        "number": _text(shown.get("number")) if isinstance(shown, dict) else None,
        "name": _text(shown.get("name")) if isinstance(shown, dict) else None,
        "data": text[:MAX_DATA],
    }


class ValueRecorder:
    """The worker's handler, with the values of each completed write journalled beside its outcome."""

    def __init__(self, inner: Handler) -> None:
        self._inner = inner
        self.db: Database = inner.db

    async def handle(self, delivery: Delivery) -> Outcome:
        outcome = await self._inner.handle(delivery)
        if not isinstance(outcome, Complete) or outcome.result not in WRITES:
            return outcome
        found = values_of(delivery.body)
        if found is None:
            return outcome
        inner = outcome.journal

        def journal(conn: Connection) -> None:
            if inner is not None:
                inner(conn)
            values.add(conn, **found, at=utcnow())

        combined: Journal = journal
        return dataclasses.replace(outcome, journal=combined)
