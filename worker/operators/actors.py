"""Who acts, with which role, and every operator action journalled in the sync log (the audit trail).

Roles: ``viewer`` reads; ``operator`` also replays, edits and purges dead letters; ``admin`` also
provisions clients and connections and administers provider definitions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from config_db import sync_log
from config_db.sync_log import Entry
from worker.db import Database

Role = Literal["viewer", "operator", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "admin")


class Forbidden(Exception):
    """The actor's role does not allow the action; the message says which role it needs."""


@dataclass(frozen=True, slots=True)
class Actor:
    name: str
    role: Role
    via: str = "console"  # console | admin-api | cli

    def can(self, needed: Role) -> bool:
        return ROLES.index(self.role) >= ROLES.index(needed)

    def require(self, needed: Role, what: str) -> None:
        if not self.can(needed):
            raise Forbidden(f"{what} needs the {needed} role; {self.name} is {self.role}")

    @property
    def label(self) -> str:
        return f"{self.name} ({self.via})"


def audit_entry(actor: Actor, action: str, *, client_id: str | None = None, **what: Any) -> Entry:
    """A sync-log row for one operator action: who, what (``action`` and its details), when (``at``)."""
    detail = {"operator": actor.name, "role": actor.role, "via": actor.via, **what}
    return Entry(
        direction="operator",
        action=action[:32],
        client_id=client_id,
        detail=json.dumps(detail, ensure_ascii=False, default=str, sort_keys=True),
    )


async def audit(
    db: Database, actor: Actor, action: str, *, client_id: str | None = None, **what: Any
) -> None:
    entry = audit_entry(actor, action, client_id=client_id, **what)
    await db.run(lambda conn: sync_log.record(conn, entry))
