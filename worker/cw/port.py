"""The port to CW's APIs: what the inbound path and the thin-event fill need from Contracting Works.

Every call names the client (CW is multi-tenant) and carries an idempotency key, so a redelivered
message that repeats a write gets CW's first answer instead of a second record. Failures are the
typed errors of ``providers.errors``: TransientError is retried, PermanentError dead-letters.
"""

from __future__ import annotations

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
