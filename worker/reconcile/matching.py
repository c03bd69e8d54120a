"""Matching CW's records with the ERP's, then judging each pair: by record link first (or the CW id
the ERP keeps), then by natural key (the record's number).

A full run has read everything on both sides, so a record absent from one side's reading is absent
from that side. An incremental run has read only what changed: a record's counterpart that did not
change is read on its own (by its link, else by its number) before anything is judged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from config_db.sync_log import Link
from contracts import Entity
from worker.reconcile.compare import CWState, Finding, Kind, differences
from worker.reconcile.sides import ErpSide

ReadErp = Callable[[str | None, str | None, str | None], Awaitable[ErpSide | None]]
"""``(external_id, cw_id, number)`` → the ERP's record, None when it has none."""
ReadCW = Callable[[str], Awaitable[CWState]]


@dataclass
class Matched:
    """CW id → the ERP record paired with it; ERP records paired with nothing."""

    pairs: dict[str, ErpSide] = field(default_factory=dict)
    unpaired: list[ErpSide] = field(default_factory=list)


def _linked(links: Mapping[str, Link]) -> dict[str, str]:
    return {
        link.external_id: cw_id
        for cw_id, link in links.items()
        if link.external_id is not None and not link.deleted
    }


def match(cw: Mapping[str, CWState], erp: list[ErpSide], links: Mapping[str, Link]) -> Matched:
    by_external = _linked(links)
    by_number = {
        str(state.record["number"]): cw_id
        for cw_id, state in cw.items()
        if state.record is not None and state.record.get("number")
    }
    matched = Matched()
    for side in erp:
        cw_id = side.cw_id or by_external.get(side.listed.external_id)
        if cw_id is None and side.number is not None and not side.listed.deleted:
            candidate = by_number.get(side.number)
            link = links.get(candidate) if candidate is not None else None
            # A CW record linked to another ERP record is not this one's, whatever its number.
            if candidate is not None and (link is None or link.deleted or link.external_id is None):
                cw_id = candidate
        if cw_id is None or cw_id not in cw or cw_id in matched.pairs:
            matched.unpaired.append(side if cw_id is None or side.cw_id else _named(side, cw_id))
            continue
        matched.pairs[cw_id] = side
    return matched


def _named(side: ErpSide, cw_id: str) -> ErpSide:
    """An ERP record whose CW id is known from its link (not from the ERP)."""
    return ErpSide(replace(side.listed, cw_id=cw_id), side.fields, side.number, side.error)


def judge(entity: Entity, state: CWState, side: ErpSide | None, link: Link | None) -> Finding | None:
    """The finding for one CW record and the ERP record paired with it (None: nothing to say)."""
    number = str(state.record["number"]) if state.record and state.record.get("number") else None
    external = side.listed.external_id if side is not None else (link.external_id if link else None)

    def finding(kind: Kind, **more: Any) -> Finding:
        return Finding(entity, kind, state.cw_id, external, number, cw=state, **more)

    if state.record is None:
        if side is None or side.listed.deleted:
            return None  # deleted on both sides
        return finding(Kind.missing_in_cw, erp=side.listed)
    if side is None or side.listed.deleted:
        was_linked = link is not None and not link.deleted and link.external_id is not None
        return finding(Kind.gone if was_linked else Kind.missing_in_erp)
    if side.fields is None:
        if _untouched(state, side, link):
            return finding(Kind.in_step, erp=side.listed)
        return finding(Kind.different, erp=side.listed, detail=side.error)
    try:
        found = differences(entity, state.record, side.fields)
    except ValueError as exc:
        detail = f"the ERP's record is not a valid CW {entity.value}: {exc}"
        return finding(Kind.different, erp=side.listed, detail=detail)
    return finding(Kind.different if found else Kind.in_step, differences=found, erp=side.listed)


def _untouched(state: CWState, side: ErpSide, link: Link | None) -> bool:
    """An ERP record its mapping cannot read back (a Uni draft invoice has no number yet) is in step
    when neither side changed since our last write: the ERP holds the version we wrote, and CW the
    sequence the ERP was given."""
    return (
        link is not None
        and not link.deleted
        and side.listed.version is not None
        and side.listed.version == link.version
        and state.sequence is not None
        and state.sequence == link.cw_sequence
    )


def judge_unpaired(entity: Entity, side: ErpSide) -> Finding | None:
    """An ERP record no CW record pairs with (its CW id known when the ERP or a link names it)."""
    if side.listed.deleted:
        return None
    return Finding(
        entity=entity,
        kind=Kind.missing_in_cw,
        cw_id=side.cw_id,
        external_id=side.listed.external_id,
        number=side.number,
        erp=side.listed,
    )


async def complete(
    cw: dict[str, CWState],
    matched: Matched,
    links: Mapping[str, Link],
    read_erp: ReadErp,
    read_cw: ReadCW,
) -> None:
    """Incremental runs: read the counterpart of each record that has none among what changed."""
    for cw_id, state in list(cw.items()):
        if cw_id in matched.pairs or state.record is None:
            continue
        link = links.get(cw_id)
        external = link.external_id if link is not None and not link.deleted else None
        number = state.record.get("number")
        found = await read_erp(external, cw_id, str(number) if number else None)
        if found is not None:
            matched.pairs[cw_id] = found
    still = []
    for side in matched.unpaired:
        if side.cw_id is None or side.cw_id in cw or side.cw_id in matched.pairs or side.listed.deleted:
            still.append(side)
            continue
        cw[side.cw_id] = await read_cw(side.cw_id)
        matched.pairs[side.cw_id] = side
    matched.unpaired = still
