"""What every vendor provider shares: its connection, typed settings, the identity it discovers once,
and the inbound dispatch from an entity to the reader that maps the vendor's record to CW."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, ClassVar, TypeVar

import aiohttp

from contracts import CWRecord, Entity
from providers.base import (
    ConnectionSpec,
    CWDraft,
    ExternalRecord,
    OutboundChange,
    PreparedRequest,
    PushResult,
)
from providers.errors import MappingError
from providers.listing import Listed
from providers.plan import LIVE, Dry, Plan
from providers.settings import SettingsReader

Reader = Callable[[Mapping[str, Any], SettingsReader], CWDraft]
"""One entity's way back: the vendor's record (as ``fetch`` or the webhook has it) → a CW draft."""
R = TypeVar("R", bound=CWRecord)
T = TypeVar("T")


def record_of(change: OutboundChange, record_type: type[R]) -> R:
    """The change's CW record, which must be of ``record_type`` (MappingError otherwise)."""
    if not isinstance(change.record, record_type):
        raise MappingError(
            f"{change.entity.value}.{change.action.value} {change.cw_id} carries no {record_type.__name__}"
        )
    return change.record


class Once:
    """An async value computed on first use and shared by every task after that (None is kept too)."""

    def __init__(self, compute: Callable[[], Awaitable[str | None]]) -> None:
        self._compute = compute
        self._lock = asyncio.Lock()
        self._done = False
        self._value: str | None = None

    def seed(self, value: str | None) -> None:
        """Keep ``value`` unless it was computed already (a read that answered it on the way)."""
        if not self._done:
            self._value, self._done = value, True

    async def get(self) -> str | None:
        async with self._lock:
            if not self._done:
                self._value = await self._compute()
                self._done = True
            return self._value


def readers(customer: Reader, supplier: Reader, project: Reader, invoice: Reader) -> Mapping[Entity, Reader]:
    """The inbound readers of a vendor, by entity."""
    return {
        Entity.customer: customer,
        Entity.supplier: supplier,
        Entity.project: project,
        Entity.invoice: invoice,
    }


def run_dry(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never waits on I/O (a dry run of a plan) to its result, synchronously."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coroutine.close()
    raise RuntimeError("a dry run waited on I/O")


class VendorProvider:
    """The shared part of the Tripletex, Visma.net and Uni Economy providers.

    Subclasses set ``kind`` and ``readers`` and implement ``_run`` (the push, against a plan) and
    ``_discover_identity``.
    """

    kind: ClassVar[str]
    readers: ClassVar[Mapping[Entity, Reader]]

    def __init__(self, spec: ConnectionSpec, http: aiohttp.ClientSession) -> None:
        self.spec = spec
        self.http = http
        self.settings = SettingsReader.of(spec)
        self._identity = Once(self._discover_identity)

    async def push(self, change: OutboundChange) -> PushResult:
        return await self._run(change, LIVE)

    def preview(self, change: OutboundChange) -> list[PreparedRequest]:
        """The requests ``push`` sends for a record the ERP does not hold yet: the same plan, dry."""
        plan = Dry()
        run_dry(self._run(change, plan))
        return plan.requests

    async def _run(self, change: OutboundChange, plan: Plan) -> PushResult:
        raise NotImplementedError

    async def identity(self) -> str | None:
        """Who our credentials act as, as the vendor's webhooks name a change's author (cached)."""
        return await self._identity.get()

    async def _discover_identity(self) -> str | None:
        raise NotImplementedError

    async def identity_note(self) -> str:
        """How ``cwi connections test`` reports the identity (echo suppression relies on it)."""
        found = await self.identity()
        if found is None:
            return "; the ERP does not name the author of changes"
        return f"; changes we make carry author {found}"

    def to_cw(self, entity: Entity, value: Mapping[str, Any]) -> CWDraft:
        return self.readers[entity](value, self.settings)

    def anchor_at(self, when: dt.datetime) -> str:
        """The listing anchor of a point in time: the vendors filter by change time."""
        return when.astimezone(dt.UTC).isoformat()

    async def read_record(
        self, entity: Entity, *, external_id: str | None, cw_id: str | None, number: str | None
    ) -> Listed | None:
        """By the ERP's id (``fetch``); a record never linked by ``find_record`` (its number, or
        CW's id where the vendor keeps it)."""
        if external_id is not None:
            found = await self.fetch(entity, external_id)
            return None if found is None else self.listed(entity, found.value)
        return await self.find_record(entity, cw_id=cw_id, number=number)

    async def fetch(self, entity: Entity, external_id: str) -> ExternalRecord | None:
        raise NotImplementedError

    def listed(self, entity: Entity, value: Mapping[str, Any]) -> Listed:
        """A record as ``fetch`` reads it, as reconciliation lists it."""
        raise NotImplementedError

    async def find_record(self, entity: Entity, *, cw_id: str | None, number: str | None) -> Listed | None:
        raise NotImplementedError
