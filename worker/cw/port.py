"""The port to CW's APIs: what the inbound path and the thin-event fill need from Contracting Works.

Every call names the client (CW is multi-tenant) and carries an idempotency key, so a redelivered
message that repeats a write gets CW's first answer instead of a second record. Failures are the
typed errors of ``providers.errors``: TransientError is retried, PermanentError dead-letters.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Protocol

from contracts import Entity


@dataclass(frozen=True, slots=True)
class Written:
    """What CW answered to a write: the record's id and CW's version of it after the write (the
    ``sequence`` its event carries), when CW said."""

    cw_id: str
    version: int | None = None


class CWApi(Protocol):
    async def fetch(self, client_id: str, entity: Entity, cw_id: str, *, key: str) -> dict[str, Any] | None:
        """The CW record (JSON, with ``id``) from the Query API; None when CW has no such record."""
        ...

    async def create(self, client_id: str, entity: Entity, fields: dict[str, Any], *, key: str) -> Written:
        """Create the record from its fields (no ``id``); CW's id and version."""
        ...

    async def update(
        self, client_id: str, entity: Entity, cw_id: str, fields: dict[str, Any], *, key: str
    ) -> Written | None:
        """Replace the record's fields; None when CW has no such record."""
        ...

    async def delete(self, client_id: str, entity: Entity, cw_id: str, *, key: str) -> bool:
        """Delete the record; False when it was already gone."""
        ...


@dataclass(frozen=True, slots=True)
class CWChange:
    """One record of a CW listing: its latest state (``record`` None when deleted)."""

    cw_id: str
    sequence: int | None
    updated_at: dt.datetime | None
    record: dict[str, Any] | None

    @property
    def deleted(self) -> bool:
        return self.record is None


@dataclass(frozen=True, slots=True)
class CWPage:
    items: tuple[CWChange, ...]
    next_cursor: str
    has_more: bool


class CWLister(Protocol):
    """CW's records in bulk (reconciliation): the Query API's paginated listing."""

    async def list_changes(
        self,
        client_id: str,
        entity: Entity,
        *,
        changed_since: dt.datetime | None,
        cursor: str | None,
        first: int,
        key: str,
    ) -> CWPage:
        """One page of the client's records changed since ``changed_since`` (or after ``cursor``)."""
        ...
