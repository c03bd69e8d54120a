"""Dead letters as operators see them: the envelope's client, type and id read from the body,
and the selection (filters) that ``cwi dlq`` and the admin API share."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from config_db import durations
from contracts import jsontext
from contracts.reasons import DeadLetterReason
from worker.buses.base import DeadLetter


class SelectionError(ValueError):
    """A filter value that makes no sense; the message names the filter."""


def parse_duration(text: str, what: str = "the duration") -> dt.timedelta:
    """``7d``, ``12h``, ``30m``, ``45s``, ``2w`` (``0s``: no time at all); ``what`` names it in the error."""
    try:
        return durations.parse_duration(text, zero=True)
    except durations.BadDuration as exc:
        raise SelectionError(f"{what} {exc}") from None


def parse_since(text: str) -> dt.datetime:
    """An ISO 8601 date or time; without a zone it is UTC."""
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise SelectionError(
            f"since must be an ISO 8601 date or time like 2026-11-23T08:00Z, not {text!r}"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


MAX_BODY = 1024 * 1024  # an envelope is a few kB; what is larger is shown raw, not parsed


def _envelope(body: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or None for anything else: not JSON, too large, nested too deep
    (any body a bus can hold must leave the operator tools working; it is then shown raw)."""
    if len(body) > MAX_BODY:
        return None
    try:
        parsed = jsontext.loads(body)
    except ValueError:  # not JSON, or nested too deep (jsontext.BadText)
        return None
    return parsed if isinstance(parsed, dict) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class Letter:
    """A dead letter and what its body says (a body that is not a JSON object says nothing)."""

    dead: DeadLetter
    envelope: dict[str, Any] | None

    @classmethod
    def of(cls, dead: DeadLetter) -> Letter:
        return cls(dead, _envelope(dead.body))

    @property
    def id(self) -> str:
        return self.dead.message_id

    @property
    def client_id(self) -> str | None:
        return _text((self.envelope or {}).get("client_id")) or self.dead.session_id

    @property
    def type(self) -> str | None:
        return _text((self.envelope or {}).get("type"))

    @property
    def envelope_id(self) -> str | None:
        return _text((self.envelope or {}).get("id"))

    @property
    def entity(self) -> str | None:
        return self.type.partition(".")[0] if self.type else None

    @property
    def cw_id(self) -> str | None:
        """The CW record the envelope is about (its data's id, or ``record_id``)."""
        data = (self.envelope or {}).get("data")
        found = data.get("id") if isinstance(data, dict) else None
        return _text(found) or _text((self.envelope or {}).get("record_id"))

    @property
    def at(self) -> dt.datetime:
        """When it was dead-lettered (Service Bus does not say: then when it was enqueued)."""
        return self.dead.dead_lettered_at or self.dead.enqueued_at

    def summary(self) -> dict[str, Any]:
        d = self.dead
        return {
            "id": d.message_id,
            "sequence_number": d.sequence_number,
            "client_id": self.client_id,
            "type": self.type,
            "envelope_id": self.envelope_id,
            "reason": d.reason,
            "description": d.description,
            "delivery_count": d.delivery_count,
            "enqueued_at": d.enqueued_at.isoformat(),
            "dead_lettered_at": None if d.dead_lettered_at is None else d.dead_lettered_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class Selection:
    """Which dead letters an operation applies to: ``ids`` (if any) and every filter that is set."""

    ids: Sequence[str] = ()
    client: str | None = None
    reason: str | None = None
    type: str | None = None
    since: dt.datetime | None = None
    older_than: dt.timedelta | None = None
    limit: int | None = None
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    def matches(self, letter: Letter) -> bool:
        return (
            (not self.ids or letter.id in self.ids)
            and (self.client is None or letter.client_id == self.client)
            and (self.reason is None or letter.dead.reason == self.reason)
            and (self.type is None or letter.type == self.type)
            and (self.since is None or letter.at >= self.since)
            and (self.older_than is None or letter.at < self.now - self.older_than)
        )

    def pick(self, letters: Iterable[Letter]) -> list[Letter]:
        chosen = [letter for letter in letters if self.matches(letter)]
        return chosen if self.limit is None else chosen[: self.limit]


def grouped(letters: Iterable[Letter]) -> list[dict[str, Any]]:
    """Counts by client and reason, largest first."""
    counts = Counter((letter.client_id or "", letter.dead.reason) for letter in letters)
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [{"client_id": client, "reason": reason, "count": n} for (client, reason), n in ordered]


class SelectionRequest(BaseModel):
    """A selection as the CLI's options or the admin API's parameters give it: each value checked
    (422 naming the field in the API, one line in the CLI), then turned into a ``Selection``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ids: list[Annotated[str, Field(min_length=1, max_length=128)]] | None = None
    client: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    reason: DeadLetterReason | None = None
    type: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    since: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    older_than: Annotated[str, Field(min_length=1, max_length=32)] | None = None
    limit: Annotated[int, Field(ge=1, le=100_000, strict=False, allow_inf_nan=False)] | None = None

    @field_validator("limit", mode="before")
    @classmethod
    def _whole_number(cls, value: object) -> object:
        if isinstance(value, bool | float | list | dict):
            raise ValueError("must be a whole number")
        return value

    def selection(self) -> Selection:
        return Selection(
            ids=tuple(self.ids or ()),
            client=self.client,
            reason=None if self.reason is None else self.reason.value,
            type=self.type,
            since=None if self.since is None else parse_since(self.since),
            older_than=None if self.older_than is None else parse_duration(self.older_than, "older_than"),
            limit=self.limit,
        )


def describe_invalid(exc: ValidationError) -> str:
    """One line naming each bad field."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'request'}: {err['msg'].removeprefix('Value error, ')}"
        for err in exc.errors(include_url=False)
    )
