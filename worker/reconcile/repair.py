"""Repairs: each finding's fix as an ordinary event (``source: "operator"``), so that it goes through
the same pipeline, journal, order and echo rules as any other change.

Which side wins is the connection's setting ``reconcile_winner.<entity>`` (``cw``, the default, or
``erp``), never a guess. CW winning: a thin event (``record_id``, no ``data``, CW's current
``sequence``) that the worker completes from CW's Query API when it handles it, so what is pushed is
CW's newest state; or a delete, when the record is gone from CW. The ERP winning: an event carrying
the ERP's record as ``external``, which takes the inbound path (written to CW, linked, its CW event
recognised as our echo). A finding neither side can settle alone says what to decide instead.

Each event's id is derived from the finding (record, kind, both versions), so a repair published
twice before the worker took it is one message (the bus drops the second, the inbox the third),
while a later drift of the same record is a new repair.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

from contracts import Entity
from providers.settings import SettingsReader
from worker.buses.base import OutgoingMessage
from worker.reconcile.compare import Finding, Kind

Winner = Literal["cw", "erp"]
WINNER_SETTING = "reconcile_winner."
DEFAULT_WINNER: Winner = "cw"
MAX_DELETES_SETTING = "reconcile_max_deletes"
DEFAULT_MAX_DELETES = 10
"""Deletes one run may publish for one entity; more are held back (``held_back``)."""


def winner(settings: SettingsReader, entity: Entity) -> Winner:
    """The connection's winner for ``entity`` (MappingError naming the setting when it is not one)."""
    return "erp" if settings.side(WINNER_SETTING + entity.value, DEFAULT_WINNER) == "erp" else "cw"


@dataclass(frozen=True, slots=True)
class Repair:
    """A finding's fix: the event to publish, or why there is none (``decide``)."""

    finding: Finding
    winner: Winner
    envelope: dict[str, Any] | None
    note: str

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"winner": self.winner, "note": self.note}
        if self.envelope is not None:
            out["event"] = {k: self.envelope[k] for k in ("id", "type") if k in self.envelope}
        return out


def _event_id(client_id: str, finding: Finding, side: Winner) -> str:
    erp_version = finding.erp.version if finding.erp is not None else None
    cw_sequence = finding.cw.sequence if finding.cw is not None else None
    key: list[object] = [client_id, finding.entity.value, finding.kind.value, finding.cw_id]
    key += [finding.external_id, cw_sequence, erp_version, side]
    return "reconcile-" + hashlib.sha256(json.dumps(key).encode()).hexdigest()[:40]


def _envelope(client_id: str, finding: Finding, side: Winner, action: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": _event_id(client_id, finding, side),
        "client_id": client_id,
        "type": f"{finding.entity.value}.{action}",
        "source": "operator",
        "occurred_at": dt.datetime.now(dt.UTC).isoformat(),
        **{k: v for k, v in fields.items() if v is not None},
    }


def _push(client_id: str, finding: Finding, action: str) -> dict[str, Any]:
    """CW's record to the ERP: a thin event the worker fills from CW when it handles it."""
    sequence = finding.cw.sequence if finding.cw is not None else None
    return _envelope(client_id, finding, "cw", action, record_id=finding.cw_id, sequence=sequence)


def _inbound(client_id: str, finding: Finding, provider: str, action: str) -> dict[str, Any]:
    """The ERP's record to CW, through the inbound path."""
    listed = finding.erp
    external: dict[str, Any] = {"provider": provider, "external_id": finding.external_id}
    if listed is not None:
        external |= {"version": listed.version, "author": listed.author}
        if listed.value is not None and action != "deleted":
            external["value"] = dict(listed.value)
    external = {k: v for k, v in external.items() if v is not None}
    return _envelope(client_id, finding, "erp", action, record_id=finding.cw_id, external=external)


def plan(client_id: str, provider: str, finding: Finding, side: Winner) -> Repair:
    """The fix of one finding when ``side`` wins."""
    entity, kind = finding.entity.value, finding.kind
    if kind is Kind.in_step:
        return Repair(finding, side, None, "in step")
    other = "erp" if side == "cw" else "cw"
    switch = f"set {WINNER_SETTING}{entity}={other} to let the other side win"
    if side == "cw":
        if kind is Kind.missing_in_erp:
            return Repair(
                finding, side, _push(client_id, finding, "created"), "CW's record pushed to the ERP"
            )
        if kind in (Kind.different, Kind.gone):
            return Repair(
                finding, side, _push(client_id, finding, "updated"), "CW's record pushed to the ERP"
            )
        if finding.cw_id is not None:
            delete = _envelope(client_id, finding, "cw", "deleted", record_id=finding.cw_id)
            return Repair(finding, side, delete, "deleted in the ERP, as it is in CW")
        note = f"CW never had this {entity}: delete it in the ERP, or {switch} (CW wins now)"
        return Repair(finding, side, None, note)
    if kind is Kind.missing_in_erp:
        note = f"the ERP has no such {entity}: delete it in CW, or {switch} (the ERP wins now)"
        return Repair(finding, side, None, note)
    if kind is Kind.gone:
        return Repair(finding, side, _inbound(client_id, finding, provider, "deleted"), "deleted in CW")
    if finding.erp is None or finding.erp.value is None or (kind is Kind.different and finding.detail):
        note = f"the ERP's {entity} cannot be written to CW ({finding.detail or 'no record'}): {switch}"
        return Repair(finding, side, None, note)
    action = "created" if kind is Kind.missing_in_cw and finding.cw_id is None else "updated"
    return Repair(
        finding, side, _inbound(client_id, finding, provider, action), "the ERP's record written to CW"
    )


def held_back(repairs: list[Repair], limit: int) -> list[Repair]:
    """``repairs``, their deletes held back (no event, a note why) when there are more than
    ``limit`` of them. A side whose listing came back empty (a connection pointed at another
    company, an API answering nothing during an outage) looks exactly like every record deleted
    there: repaired, it deleted them all on the other side too."""
    deletes = {
        id(r) for r in repairs if r.envelope is not None and str(r.envelope["type"]).endswith(".deleted")
    }
    if len(deletes) <= limit:
        return repairs
    note = (
        f"held back: {len(deletes)} deletes in one run are more than {MAX_DELETES_SETTING}={limit} "
        "(a listing that came back empty looks the same): check both sides, then raise the setting"
    )
    return [dataclasses.replace(r, envelope=None, note=note) if id(r) in deletes else r for r in repairs]


def message(repair: Repair) -> OutgoingMessage:
    """The bus message of a repair: its transport id is its event id (the bus drops a repeat)."""
    assert repair.envelope is not None
    envelope = repair.envelope
    body = json.dumps(envelope, ensure_ascii=False).encode()
    properties = {"envelope_id": envelope["id"], "type": envelope["type"], "reconcile": True}
    return OutgoingMessage(body, envelope["id"], envelope["client_id"], properties)
