"""The port to CW's APIs: what the inbound path and the thin-event fill need from Contracting Works.

Every call names the client (CW is multi-tenant) and carries an idempotency key, so a redelivered
message that repeats a write gets CW's first answer instead of a second record. Failures are the
typed errors of ``providers.errors``: TransientError is retried, PermanentError dead-letters.
"""

from __future__ import annotations

from typing import Any, Protocol

from contracts import Entity


class CWApi(Protocol):
    async def fetch(self, client_id: str, entity: Entity, cw_id: str, *, key: str) -> dict[str, Any] | None:
        """The CW record (JSON, with ``id``) from the Query API; None when CW has no such record."""
        ...

    async def create(self, client_id: str, entity: Entity, fields: dict[str, Any], *, key: str) -> str:
        """Create the record from its fields (no ``id``); return the id CW assigned."""
        ...

    async def update(
        self, client_id: str, entity: Entity, cw_id: str, fields: dict[str, Any], *, key: str
    ) -> bool:
        """Replace the record's fields; False when CW has no such record."""
        ...

    async def delete(self, client_id: str, entity: Entity, cw_id: str, *, key: str) -> bool:
        """Delete the record; False when it was already gone."""
        ...
