"""The envelope every bus message carries, and its parsing with field-naming errors."""

from __future__ import annotations

import datetime as dt
import json
import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from contracts.records import (
    CONTRACT,
    Customer,
    CWRecord,
    Identifier,
    Invoice,
    Project,
    Supplier,
    _no_surrounding_space,
)


class Entity(StrEnum):
    customer = "customer"
    supplier = "supplier"
    project = "project"
    invoice = "invoice"


class Action(StrEnum):
    created = "created"
    updated = "updated"
    deleted = "deleted"


class Source(StrEnum):
    frontend = "frontend"
    """Emitted by the CW frontend."""
    webhook = "webhook"
    """Published by our webhook listener for a change made in the ERP."""
    replay = "replay"
    """Re-sent by an operator from the dead-letter queue."""
    operator = "operator"
    """Published by an operator by hand (``cwi send``), or by ``cwi reconcile --repair``; with
    ``external``, an ERP change to apply to CW (the inbound path)."""


ClientId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
EnvelopeId = Annotated[str, Field(min_length=1, max_length=128)]
_ISO_INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|z|[+-]\d{2}(:?\d{2})?)")


def _iso_instant(value: Any) -> Any:
    """``occurred_at`` is an ISO 8601 date-time with its offset, never a Unix timestamp."""
    if isinstance(value, dt.datetime):
        return value
    if not isinstance(value, str) or not _ISO_INSTANT.fullmatch(value):
        example = "2026-11-23T10:00:00Z"
        raise ValueError(f"must be an ISO 8601 date-time with an offset like {example}, not {value!r}")
    return value


# Lax inside (a checked ISO string becomes a datetime); the validator before it admits nothing else.
Instant = Annotated[AwareDatetime, Field(strict=False), BeforeValidator(_iso_instant)]


class ExternalChange(BaseModel):
    """What an ERP's webhook said changed, carried by ``source: "webhook"`` envelopes.

    ``value`` is the vendor's record when the webhook included it (otherwise the worker fetches
    it); ``version`` and ``author`` feed echo suppression; ``event_id`` is the vendor's delivery id.
    """

    model_config = CONTRACT

    provider: Annotated[str, Field(min_length=1, max_length=32)]
    external_id: Annotated[str, Field(min_length=1, max_length=255)]
    version: Annotated[str, Field(max_length=64)] | None = None  # the sync log keeps 64
    author: str | None = None
    event_id: Annotated[str, Field(max_length=255)] | None = None  # the listener's receipt keeps 255
    value: dict[str, Any] | None = None


class Envelope(BaseModel):
    """``{"id", "client_id", "type": "<entity>.<action>", "source", "occurred_at", "data"}``.

    ``data`` is the CW record. When it is omitted the event is *thin*: ``record_id`` names the CW
    record (deletes, or events the worker completes with a CW query). Webhook events
    (``source: "webhook"``) carry ``external`` instead: the ERP's side of the change, with
    ``record_id`` only when the ERP told us the CW id.

    ``external`` is also allowed on ``source: "operator"`` events: a repair that applies the ERP's
    record to CW (``cwi reconcile --repair`` when the ERP wins).

    ``sequence`` orders the events of one record: CW's row version, strictly increasing per record
    (a delete included). The worker never applies an event older than one it has applied for the
    same record (it is journalled ``superseded``); without ``sequence`` it compares ``occurred_at``.
    """

    model_config = CONTRACT

    id: Annotated[EnvelopeId, AfterValidator(_no_surrounding_space)]
    client_id: ClientId
    type: str
    source: Source
    occurred_at: Instant
    record_id: Identifier | None = None
    sequence: Annotated[int, Field(ge=0, le=2**63 - 1)] | None = None
    data: CWRecord | None = None
    external: ExternalChange | None = None

    @model_validator(mode="after")
    def _record_present(self) -> Envelope:
        if self.source is Source.webhook:
            if self.external is None:
                raise ValueError("external is required for webhook events")
        elif self.external is not None:
            if self.source is not Source.operator:
                raise ValueError(
                    "external is only allowed on webhook and operator events, "
                    f"not source {self.source.value!r}"
                )
            if self.data is not None:
                raise ValueError("an operator event carries data (a CW change) or external (an ERP change)")
        elif self.data is None and self.record_id is None:
            raise ValueError("record_id is required when data is omitted")
        if self.data is not None and self.record_id is not None and self.record_id != self.data.id:
            raise ValueError(f"record_id {self.record_id!r} differs from data.id {self.data.id!r}")
        return self

    @property
    def inbound(self) -> bool:
        """A change made in the ERP, to apply to CW (as opposed to a CW change to push)."""
        return self.external is not None

    @property
    def entity(self) -> Entity:
        return Entity(self.type.partition(".")[0])

    @property
    def action(self) -> Action:
        return Action(self.type.partition(".")[2])

    @property
    def cw_id(self) -> str:
        """The CW record's id. Outbound events always have one; webhook events may not."""
        if self.data is not None:
            return self.data.id
        if self.record_id is None:
            raise ValueError(f"event {self.id} names no CW record (a webhook event without record_id)")
        return self.record_id


def _types(entity: str) -> Any:
    return Literal[f"{entity}.created", f"{entity}.updated", f"{entity}.deleted"]


class CustomerEnvelope(Envelope):
    type: _types("customer")  # type: ignore[valid-type]
    data: Customer | None = None


class SupplierEnvelope(Envelope):
    type: _types("supplier")  # type: ignore[valid-type]
    data: Supplier | None = None


class ProjectEnvelope(Envelope):
    type: _types("project")  # type: ignore[valid-type]
    data: Project | None = None


class InvoiceEnvelope(Envelope):
    type: _types("invoice")  # type: ignore[valid-type]
    data: Invoice | None = None


_ENTITIES = frozenset(Entity.__members__)


def _entity_tag(value: Any) -> str | None:
    raw = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    if not isinstance(raw, str):
        return None
    entity = raw.partition(".")[0]
    return entity if entity in _ENTITIES else None


_TYPE_ERROR = (
    "type must be '<entity>.<action>' with entity one of customer, supplier, project, invoice "
    "and action one of created, updated, deleted"
)

_ENVELOPE = TypeAdapter[Envelope](
    Annotated[
        Annotated[CustomerEnvelope, Tag("customer")]
        | Annotated[SupplierEnvelope, Tag("supplier")]
        | Annotated[ProjectEnvelope, Tag("project")]
        | Annotated[InvoiceEnvelope, Tag("invoice")],
        Discriminator(_entity_tag, custom_error_type="invalid_type", custom_error_message=_TYPE_ERROR),
    ],
    config=ConfigDict(cache_strings="keys"),  # the models' own (CONTRACT) do not reach the union's parser
)


class InvalidEnvelopeError(ValueError):
    """A body that is not a valid envelope; ``problems`` names each bad field."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _field_path(loc: tuple[int | str, ...]) -> str:
    parts = list(loc)
    if parts and parts[0] in Entity.__members__:
        parts = parts[1:]  # the union's tag, not a field
    path = ""
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not str(part).startswith(("function-", "tagged-union")):
            path += f".{part}" if path else str(part)
    return path


def describe_errors(exc: ValidationError) -> list[str]:
    """One ``"field.path: message"`` line per error."""
    problems = []
    for err in exc.errors(include_url=False):
        path = _field_path(tuple(err["loc"]))
        message = err["msg"].removeprefix("Value error, ")
        problems.append(f"{path}: {message}" if path else message)
    return problems


def _nul_paths(value: Any, path: str = "") -> list[str]:
    """Where a string (or a key) of parsed JSON holds a NUL character."""
    if isinstance(value, str):
        return [path or "body"] if "\x00" in value else []
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            inner = f"{path}.{key}" if path else str(key)
            found += [inner] if "\x00" in str(key) else _nul_paths(item, inner)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += _nul_paths(item, f"{path}[{i}]")
    return found


def parse_envelope(body: bytes | str) -> Envelope:
    """Parse and validate one JSON envelope; raise InvalidEnvelopeError naming each bad field.

    No string may hold a NUL character (JSON's ``\\u0000``): PostgreSQL's text cannot store one, so
    the journal of such an envelope could never be written. Looked for only when the escape is in the
    body (one substring search on the hot path)."""
    try:
        env = _ENVELOPE.validate_json(body)
    except ValidationError as exc:
        raise InvalidEnvelopeError(describe_errors(exc)) from None
    escaped = b"\\u0000" in body if isinstance(body, bytes) else "\\u0000" in body
    if escaped:
        where = _nul_paths(json.loads(body))
        if where:
            raise InvalidEnvelopeError(
                [f"{path}: a NUL character (\\u0000) is not allowed" for path in where]
            )
    return env


def envelope_json_schema() -> dict[str, Any]:
    return _ENVELOPE.json_schema()
