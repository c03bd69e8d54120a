"""Reading envelopes from a file for ``cwi send``: one object, an array, or JSON lines; all or nothing."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from contracts import Envelope, InvalidEnvelopeError, parse_envelope
from contracts.jsontext import MAX_DEPTH, nesting_depth, position
from worker import tracing
from worker.buses.base import OutgoingMessage
from worker.messaging.order import too_far_ahead


@dataclass(frozen=True, slots=True)
class BadRecord:
    where: str  # "line 3" or "index 2"
    problems: list[str]

    def __str__(self) -> str:
        return f"{self.where}: " + "; ".join(self.problems)


def _items(text: str) -> Iterable[tuple[str, str | BadRecord]]:
    """(where, raw JSON, or why it cannot be read) for each record in ``text``."""
    stripped = text.strip()
    if not stripped:
        return
    if nesting_depth(text) > MAX_DEPTH:
        yield "input", BadRecord("input", [f"JSON nested deeper than {MAX_DEPTH} levels"])
        return
    if stripped.startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            where = position(text, exc.pos)
            yield where, BadRecord(where, [f"invalid JSON: {exc.msg}"])
            return
        for index, item in enumerate(items):
            yield f"index {index}", json.dumps(item)
        return
    try:
        single = json.loads(text)
    except ValueError:
        single = None
    if isinstance(single, dict):
        yield "object", text.strip()
        return
    # JSON Lines ends lines with \n only: U+2028, U+0085 and the like are characters inside a line
    # (str.splitlines would cut a record in two there).
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if line.strip():
            yield f"line {number}", line


def read_envelopes(text: str) -> tuple[list[tuple[Envelope, str]], list[BadRecord]]:
    """Every valid envelope with its raw JSON, and every bad record with where it is and why."""
    good: list[tuple[Envelope, str]] = []
    bad: list[BadRecord] = []
    now = dt.datetime.now(dt.UTC)
    for where, raw in _items(text):
        if isinstance(raw, BadRecord):
            bad.append(raw)
            continue
        try:
            env = parse_envelope(raw)
        except InvalidEnvelopeError as exc:
            bad.append(BadRecord(where, exc.problems))
            continue
        if (wrong_time := too_far_ahead(env, now)) is not None:  # the worker would refuse it
            bad.append(BadRecord(where, [wrong_time]))
            continue
        good.append((env, raw))
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
