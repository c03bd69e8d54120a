"""The exact fingerprint of CW record fields, and the canonical form that both sides compare.

The inbound path fingerprints the fields it writes to CW; the CW event that write causes carries
the record as CW stored it. Both go through the CW record model and one canonical JSON (sorted
keys, no whitespace, decimals normalised so ``10``, ``10.0`` and ``1E+1`` agree), so the echo is
recognised exactly, and any real difference, however small, is a genuine change.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from contracts import Customer, CWRecord, Entity, Invoice, Project, Supplier
from contracts.envelope import describe_errors
from providers.errors import MappingError

RECORD_TYPES: dict[Entity, type[CWRecord]] = {
    Entity.customer: Customer,
    Entity.supplier: Supplier,
    Entity.project: Project,
    Entity.invoice: Invoice,
}
#: the fingerprint of "the record is deleted", for the reverse echo of an inbound delete.
DELETED = "deleted"
_PLACEHOLDER_ID = "cwi-fields"


def cw_fields(entity: Entity, fields: dict[str, Any]) -> dict[str, Any]:
    """Validated CW fields (no ``id``) as JSON for the Write API; MappingError names bad fields."""
    raw = {k: v for k, v in fields.items() if k != "id"}
    try:
        record = RECORD_TYPES[entity].model_validate_json(
            json.dumps({**raw, "id": _PLACEHOLDER_ID}, default=str)
        )
    except ValidationError as exc:
        problems = "; ".join(describe_errors(exc))
        raise MappingError(f"the ERP's {entity.value} is not a valid CW {entity.value}: {problems}") from None
    body = record.model_dump(mode="json")
    del body["id"]
    return body


def _canonical(value: Any) -> Any:
    if isinstance(value, Decimal):
        return "0" if value == 0 else format(value.normalize(), "f")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


def fingerprint(record: CWRecord) -> str:
    """SHA-256 of the record's fields (not its id) in canonical JSON."""
    fields = record.model_dump(mode="python", exclude={"id"})
    encoded = json.dumps(_canonical(fields), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(encoded.encode()).hexdigest()


def fields_fingerprint(entity: Entity, fields: dict[str, Any]) -> str:
    """The fingerprint of CW fields as written (JSON, no id): the same as of the stored record."""
    record = RECORD_TYPES[entity].model_validate_json(json.dumps({**fields, "id": _PLACEHOLDER_ID}))
    return fingerprint(record)
