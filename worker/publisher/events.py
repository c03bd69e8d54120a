"""Which events a subscription wants, and the payload a subscriber receives.

A pattern is ``<entity>.<action>`` where either part may be ``*`` (``invoice.created``,
``customer.*``, ``*.deleted``), or ``*`` alone. The payload follows Standard Webhooks' shape
(``type``, ``timestamp``, ``data``) with the event's identity beside it; ``data`` is the CW record,
cut to the fields the subscription asked for (its ``id`` always kept), with secret-named fields and
every known secret value masked.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from contracts import Action, Entity
from worker.logging import redactor
from worker.messaging.outcomes import Changed

ANY = "*"
_ENTITIES = frozenset(e.value for e in Entity)
_ACTIONS = frozenset(a.value for a in Action)


class PatternError(ValueError):
    """An event pattern that can never match; the message names it and what is allowed."""


def check_patterns(patterns: Iterable[str]) -> list[str]:
    """The patterns, stripped and without repeats; PatternError for one that makes no sense."""
    checked: list[str] = []
    for raw in patterns:
        pattern = raw.strip()
        if not pattern:
            continue
        entity, dot, action = pattern.partition(".")
        valid = pattern == ANY or (dot == "." and entity in (*_ENTITIES, ANY) and action in (*_ACTIONS, ANY))
        if not valid:
            raise PatternError(
                f"event pattern {pattern!r} must be <entity>.<action> "
                f"(entity: {', '.join(sorted(_ENTITIES))}; action: {', '.join(sorted(_ACTIONS))}; "
                "either may be *), or * for every event"
            )
        if pattern not in checked:
            checked.append(pattern)
    if not checked:
        raise PatternError("give at least one event pattern, like invoice.created or customer.*")
    return checked


def matches(patterns: Iterable[str], event_type: str) -> bool:
    entity, _, action = event_type.partition(".")
    for pattern in patterns:
        if pattern == ANY:
            return True
        p_entity, _, p_action = pattern.partition(".")
        if p_entity in (entity, ANY) and p_action in (action, ANY):
            return True
    return False


def record_of(changed: Changed) -> dict[str, Any] | None:
    """The CW record as JSON values (an inbound write's fields, else the envelope's data)."""
    if changed.fields is not None:
        fields = json.loads(json.dumps(dict(changed.fields), default=str))
        return {"id": changed.cw_id, **fields}
    data = changed.envelope.data
    return None if data is None else data.model_dump(mode="json", exclude_none=True)


def cut(record: Mapping[str, Any] | None, fields: Sequence[str]) -> dict[str, Any] | None:
    """Only the ``fields`` asked for (all when none are named); ``id`` always."""
    if record is None:
        return None
    if not fields:
        return dict(record)
    return {k: v for k, v in record.items() if k == "id" or k in fields}


def payload(changed: Changed, fields: Sequence[str]) -> str:
    """The body a subscriber receives, as the exact text that is signed."""
    env = changed.envelope
    occurred: dt.datetime = env.occurred_at
    body: dict[str, Any] = {
        "type": env.type,
        "timestamp": occurred.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
        "client_id": env.client_id,
        "event_id": env.id,
        "record_id": changed.cw_id,
        "source": env.source.value,
    }
    if env.sequence is not None:
        body["sequence"] = env.sequence
    body["data"] = redactor.redact(cut(record_of(changed), fields))
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))
