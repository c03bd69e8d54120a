"""The provider protocol: what the worker asks of every ERP integration.

A provider never touches the database or the bus. It receives its connection as a plain
``ConnectionSpec`` and a shared ``aiohttp.ClientSession``, and returns results or raises the typed
errors of ``providers.errors``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import aiohttp

from contracts import Action, CWRecord, Entity
from providers.errors import ProviderRejected

EXTERNAL_ID_MAX = 255
"""The longest ERP id (and CW id) the sync log and the record links keep (``config_db.models``)."""
VERSION_MAX = 64
"""The longest record version they keep."""


def _unstorable(name: str, value: str | None, most: int) -> str | None:
    """Why ``value``, an id or version an ERP gave, cannot be kept; None when it can.

    Checked where a provider hands it over: an ERP breaking its own contract (the generic REST
    interface says 255 characters at most) failed the journal's insert on PostgreSQL at every
    delivery, a statement-long error each time, until the message was dead-lettered as
    MaxDeliveryCountExceeded; SQLite kept the value. Now it is one clear line at once.
    """
    if value is None:
        return None
    if len(value) > most:
        return f"{name} of {len(value)} characters (at most {most}): {value[:40]!r}…"
    if any(ch < " " or ch == "\x7f" for ch in value):
        return f"{name} {value[:60]!r} (a control character in it)"
    return None


def refuse_unstorable(
    error: Callable[[str], Exception], said: str, *checks: tuple[str, str | None, int]
) -> None:
    """Raise ``error`` naming the first of ``checks`` (name, value, most) that cannot be kept."""
    for name, value, most in checks:
        if problem := _unstorable(name, value, most):
            raise error(f"{said} an unusable {problem}")


@dataclass(frozen=True, slots=True)
class ConnectionSpec:
    """One client's connection to its ERP, credentials already decrypted."""

    client_id: str
    kind: str
    base_url: str
    settings: Mapping[str, str] = field(default_factory=dict)
    credentials: Mapping[str, str] = field(default_factory=dict, repr=False)

    def setting(self, name: str, default: str | None = None) -> str | None:
        return self.settings.get(name, default)


@dataclass(frozen=True, slots=True)
class OutboundChange:
    """One CW change to apply in the ERP.

    ``known_external_id`` is what the sync log last recorded for this record (None when we never
    wrote it). ``recovering`` is True when an earlier attempt of the same message journalled its
    intent but no outcome: the write may have reached the ERP, so look the record up by its
    natural key before creating anything.
    """

    idempotency_key: str
    entity: Entity
    action: Action
    cw_id: str
    record: CWRecord | None
    known_external_id: str | None = None
    recovering: bool = False


def _check_answer(external_id: str | None, version: str | None) -> None:
    """A write's answer or a read: what the sync log keeps of it must fit."""
    refuse_unstorable(
        ProviderRejected,
        "the ERP answered with",
        ("external id", external_id, EXTERNAL_ID_MAX),
        ("version", version, VERSION_MAX),
    )


@dataclass(frozen=True, slots=True)
class PushResult:
    """What the ERP now holds, for the sync log and echo suppression.

    ``outcome`` is one of created, updated, deleted, unchanged (already as we want it).
    """

    outcome: str
    external_id: str | None
    version: str | None = None
    content_hash: str | None = None
    author: str | None = None

    def __post_init__(self) -> None:
        _check_answer(self.external_id, self.version)


@dataclass(frozen=True, slots=True)
class PreparedRequest:
    """An HTTP request a provider would send (``cwi preview``); secrets already redacted."""

    method: str
    url: str
    headers: Mapping[str, str]
    json: Any = None


class Provider(Protocol):
    kind: ClassVar[str]

    async def push(self, change: OutboundChange) -> PushResult:
        """Apply the change in the ERP, exactly once in effect, or raise a typed error."""
        ...

    async def check(self) -> str:
        """Prove the connection works (auth and one cheap read); return a one-line summary."""
        ...

    async def identity(self) -> str | None:
        """Who our credentials act as in the ERP, as its webhooks name the author of a change
        (cached per instance); None when the ERP cannot say. Echo suppression compares the two."""
        ...

    def preview(self, change: OutboundChange) -> list[PreparedRequest]:
        """The requests ``push`` would send for a new record, sending nothing."""
        ...


@dataclass(frozen=True, slots=True)
class ExternalRecord:
    """The ERP's current record, as the inbound path reads it (``value`` in the vendor's shape)."""

    external_id: str
    value: Mapping[str, Any]
    version: str | None = None
    author: str | None = None

    def __post_init__(self) -> None:
        _check_answer(self.external_id, self.version)


@dataclass(frozen=True, slots=True)
class CWReference:
    """A CW field that holds CW's id of another record, known here only by the ERP's id.

    The worker resolves ``external_id`` through its record links of ``entity`` and sets ``field``.
    """

    field: str
    entity: Entity
    external_id: str


@dataclass(frozen=True, slots=True)
class CWDraft:
    """An ERP record mapped to CW: ``fields`` without ``id`` and without the references to resolve."""

    fields: Mapping[str, Any]
    references: tuple[CWReference, ...] = ()


class InboundProvider(Protocol):
    """What the inbound path needs from a provider: read the ERP's record and map it to CW."""

    kind: ClassVar[str]

    async def fetch(self, entity: Entity, external_id: str) -> ExternalRecord | None:
        """The ERP's current record; None when it no longer exists."""
        ...

    def to_cw(self, entity: Entity, value: Mapping[str, Any]) -> CWDraft:
        """The vendor's record as CW record fields without ``id`` (the CW Write API's body), and the
        references (``customer_id``, ``project_id``) the worker resolves through its record links.

        Raises MappingError (a PermanentError) naming what cannot be mapped.
        """
        ...


class ProviderFactory(Protocol):
    def __call__(self, spec: ConnectionSpec, http: aiohttp.ClientSession) -> Provider: ...


class CanonicalJson(bytes):
    """A JSON body encoded once, keys sorted and without spaces: ``providers.http.send`` sends it
    as it is, and its ``content_hash`` is the payload's (no second encoding of the same body)."""

    @classmethod
    def of(cls, payload: Any) -> CanonicalJson:
        return cls(json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode())

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self).hexdigest()


def content_hash(payload: Any) -> str:
    """Stable SHA-256 of a JSON-able payload (keys sorted), for echo suppression."""
    return CanonicalJson.of(payload).content_hash


@dataclass(frozen=True, slots=True)
class InboundChange:
    """One change an ERP reported through its webhook, as the worker's inbound path needs it."""

    entity: Entity
    action: Action
    external_id: str
    version: str | None = None
    author: str | None = None
    value: Mapping[str, Any] | None = None
    event_id: str | None = None
    cw_id: str | None = None

    def __post_init__(self) -> None:
        refuse_unstorable(
            lambda text: WebhookRejected("malformed", text),
            "the webhook names",
            ("external id", self.external_id, EXTERNAL_ID_MAX),
            ("version", self.version, VERSION_MAX),
            ("CW id", self.cw_id, EXTERNAL_ID_MAX),
            ("event id", self.event_id, EXTERNAL_ID_MAX),  # the listener's receipt keeps it
        )


class WebhookRejected(Exception):
    """A webhook call that must not be trusted or cannot be read.

    ``reason`` is one of: missing_signature, bad_signature, stale_timestamp, malformed.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
