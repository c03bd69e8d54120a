"""What reconciliation finds for one record: in step, missing on a side, different (field by field,
with both values), or linked to an ERP record that no longer exists.

Pure functions over what was read: CW's records, the ERP's records mapped to CW fields (the
provider's ``to_cw``, the inbound path's mapping), and the record links. Only the fields the ERP's
mapping carries are compared (an ERP without a phone field cannot differ in phone); values are
compared in canonical form (``10``, ``10.00`` and ``1E+1`` are one amount).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from contracts import Entity
from providers.listing import Listed

# The fingerprint's canonical form (decimals normalised): one rule for echoes and for drift.
from worker.messaging.fingerprint import RECORD_TYPES
from worker.messaging.fingerprint import _canonical as canonical_value

PLACEHOLDER_ID = "cwi-reconcile"


class Kind(StrEnum):
    in_step = "in_step"
    missing_in_erp = "missing_in_erp"
    missing_in_cw = "missing_in_cw"
    different = "different"
    gone = "gone"
    """Linked to an ERP record that no longer exists."""


@dataclass(frozen=True, slots=True)
class CWState:
    """A CW record as reconciliation read it (``record`` None: deleted in CW)."""

    cw_id: str
    sequence: int | None
    record: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class FieldDiff:
    field: str
    cw: Any
    erp: Any


@dataclass(frozen=True, slots=True)
class Finding:
    entity: Entity
    kind: Kind
    cw_id: str | None
    external_id: str | None
    number: str | None
    differences: tuple[FieldDiff, ...] = ()
    cw: CWState | None = None
    erp: Listed | None = None
    detail: str | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "entity": self.entity.value,
            "kind": self.kind.value,
            "cw_id": self.cw_id,
            "external_id": self.external_id,
            "number": self.number,
        }
        if self.differences:
            out["differences"] = [{"field": d.field, "cw": d.cw, "erp": d.erp} for d in self.differences]
        if self.detail:
            out["detail"] = self.detail
        return out


def canonical(entity: Entity, fields: dict[str, Any]) -> dict[str, Any]:
    """CW fields as the record model reads them, in canonical form (ValueError when not a record)."""
    raw = {**fields, "id": PLACEHOLDER_ID}
    try:
        record = RECORD_TYPES[entity].model_validate_json(json.dumps(raw, default=str))
    except ValidationError as exc:
        raise ValueError(str(exc).splitlines()[0]) from None
    dumped: dict[str, Any] = canonical_value(record.model_dump(mode="python", exclude={"id"}))
    return dumped


def _pruned(value: Any, shape: Any) -> Any:
    """``value`` limited to the keys ``shape`` (the ERP's own mapping of it) carries, at every level:
    an ERP whose invoice lines have no account cannot differ in a line's account."""
    if isinstance(value, list) and isinstance(shape, list) and len(value) == len(shape):
        return [_pruned(v, s) for v, s in zip(value, shape, strict=True)]
    if isinstance(value, dict) and isinstance(shape, dict):
        return {k: _pruned(v, shape[k]) for k, v in value.items() if k in shape}
    return value


def differences(
    entity: Entity, cw_record: dict[str, Any], erp_fields: dict[str, Any]
) -> tuple[FieldDiff, ...]:
    """Field by field over the fields the ERP's mapping carries (``erp_fields``), both values
    canonical; ValueError when the ERP's fields do not make a valid CW record."""
    ours = canonical(entity, cw_record)
    theirs = canonical(entity, {**ours, **erp_fields})
    found = []
    for field in sorted(erp_fields):
        if field == "id" or field not in ours:
            continue
        shape = erp_fields[field]
        cw_value, erp_value = _pruned(ours[field], shape), _pruned(theirs.get(field), shape)
        if cw_value != erp_value:
            found.append(FieldDiff(field, cw_value, erp_value))
    return tuple(found)
