"""CW record → request body of the generic REST interface: the record itself, as JSON."""

from __future__ import annotations

from typing import Any

from contracts import Customer, CWRecord, Entity, Invoice, Project, Supplier
from providers.errors import MappingError

RECORD_TYPES: dict[Entity, type[CWRecord]] = {
    Entity.customer: Customer,
    Entity.supplier: Supplier,
    Entity.project: Project,
    Entity.invoice: Invoice,
}


def to_body(entity: Entity, record: CWRecord) -> dict[str, Any]:
    """The JSON body of ``PUT /v1/{entity}/{id}``; decimals travel as strings, dates as ISO dates."""
    expected = RECORD_TYPES[entity]
    if not isinstance(record, expected):
        raise MappingError(f"a {entity.value} change carries a {type(record).__name__} record")
    return record.model_dump(mode="json")
