"""Provider definitions: named third-party systems that implement the generic REST interface."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from config_db.models import provider_definitions, utcnow

definitions = provider_definitions


class DefinitionNotFoundError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Definition:
    name: str
    base_url_template: str
    auth_scheme: str
    entities: Sequence[str]
    actions: Sequence[str]
    webhook_signing: str
    description: str = ""
    report: dict[str, Any] | None = field(default=None, compare=False)
    validated_at: dt.datetime | None = None

    def values(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "base_url_template": self.base_url_template,
            "auth_scheme": self.auth_scheme,
            "entities": list(self.entities),
            "actions": list(self.actions),
            "webhook_signing": self.webhook_signing,
        }


def _of(row: Any) -> Definition:
    return Definition(
        name=row.name,
        description=row.description,
        base_url_template=row.base_url_template,
        auth_scheme=row.auth_scheme,
        entities=tuple(row.entities or ()),
        actions=tuple(row.actions or ()),
        webhook_signing=row.webhook_signing,
        report=row.report,
        validated_at=row.validated_at,
    )


def list_definitions(db: Connection) -> list[Definition]:
    return [_of(row) for row in db.execute(select(definitions).order_by(definitions.c.name))]


def get_definition(db: Connection, name: str) -> Definition | None:
    row = db.execute(select(definitions).where(definitions.c.name == name)).first()
    return None if row is None else _of(row)


def save_definition(db: Connection, definition: Definition) -> bool:
    """Create or replace (keeping the last report only if nothing that it checked changed); True if new."""
    existing = get_definition(db, definition.name)
    values = {**definition.values(), "updated_at": utcnow()}
    if existing is None:
        db.execute(insert(definitions).values(**values, report=None, validated_at=None))
        return True
    changed = existing.values() != definition.values()
    if changed:
        values.update(report=None, validated_at=None)
    db.execute(update(definitions).where(definitions.c.name == definition.name).values(**values))
    return False


def save_report(db: Connection, name: str, report: dict[str, Any], *, passed: bool) -> None:
    done = db.execute(
        update(definitions)
        .where(definitions.c.name == name)
        .values(report=report, validated_at=utcnow() if passed else None)
    ).rowcount
    if not done:
        raise DefinitionNotFoundError(f"no provider definition named {name!r}")


def delete_definition(db: Connection, name: str) -> bool:
    return bool(db.execute(delete(definitions).where(definitions.c.name == name)).rowcount)
