"""Reading envelopes from a file for ``cwi send``: one object, an array, or JSON lines; all or nothing."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from contracts import Envelope, InvalidEnvelopeError, parse_envelope
from worker import tracing
from worker.buses.base import OutgoingMessage


@dataclass(frozen=True, slots=True)
class BadRecord:
    where: str  # "line 3" or "index 2"
    problems: list[str]

    def __str__(self) -> str:
        return f"{self.where}: " + "; ".join(self.problems)


def _items(text: str) -> Iterable[tuple[str, str]]:
    """(where, raw JSON) for each record in ``text``."""
    stripped = text.strip()
    if not stripped:
        return
    if stripped.startswith("["):
        try:
            items = json.loads(stripped)
        except ValueError as exc:
            yield "array", f"<invalid JSON: {exc}>"
            return
        for index, item in enumerate(items):
            yield f"index {index}", json.dumps(item)
        return
    try:
        single = json.loads(stripped)
    except ValueError:
        single = None
    if isinstance(single, dict):
        yield "object", stripped
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield f"line {number}", line


def read_envelopes(text: str) -> tuple[list[tuple[Envelope, str]], list[BadRecord]]:
    """Every valid envelope with its raw JSON, and every bad record with where it is and why."""
    good: list[tuple[Envelope, str]] = []
    bad: list[BadRecord] = []
    for where, raw in _items(text):
        try:
            good.append((parse_envelope(raw), raw))
        except InvalidEnvelopeError as exc:
            bad.append(BadRecord(where, exc.problems))
    return good, bad


def to_message(envelope: Envelope, raw: str | None = None, **properties: object) -> OutgoingMessage:
    """A bus message for an envelope: a fresh transport id, the client id as session id, and the
    trace it continues (or starts) in its properties."""
    body = (raw if raw is not None else envelope.model_dump_json(exclude_none=True)).encode()
    message_id = str(uuid.uuid4())
    traced = tracing.message_properties(
        **{
            "messaging.message.id": message_id,
            "cwi.message_id": envelope.id,
            "cwi.client": envelope.client_id,
            "cwi.type": envelope.type,
        }
    )
    return OutgoingMessage(
        body=body,
        message_id=message_id,
        session_id=envelope.client_id,
        properties={"envelope_id": envelope.id, "type": envelope.type, **traced, **properties},
    )
