"""One reconciliation of one client: each entity read on both sides (everything, or what changed since
its anchors), matched, judged, and, with ``repair``, each finding's fix published as an event.

Anchors (``config_db.reconcile``): a run reads everything when asked to (``full``), when an entity
has none yet, or when its last full run is older than setting ``reconcile_full_after_days``;
otherwise only what changed since them, and the records the run before found out of step (kept with
the anchors as ``pending``), so that drift is reported until it is repaired, changed or not. Every
run moves the anchors on; ``since`` reads from a point in time and leaves them as they are.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from config_db import reconcile as state
from config_db.sync_log import Link
from contracts import Entity
from providers.base import ConnectionSpec
from providers.http import ConnectionThrottle
from providers.settings import SettingsReader
from worker.buses.base import Bus
from worker.db import Database
from worker.reconcile import matching, repair, sides
from worker.reconcile.compare import CWState, Finding, Kind
from worker.reconcile.sides import Budget, CWReader, ErpSide, Progress, ReconcilingProvider

FULL_AFTER_DAYS = 7.0
DEFAULT_SHARE = 0.25
REFERENCES = {Entity.project: (Entity.customer,), Entity.invoice: (Entity.customer, Entity.project)}


@dataclass(frozen=True, slots=True)
class Options:
    entities: tuple[Entity, ...] = tuple(Entity)
    since: dt.datetime | None = None
    full: bool = False
    repair: bool = False


@dataclass
class EntityReport:
    entity: Entity
    mode: str
    """``full``, ``incremental`` or ``since``."""
    cw_read: int = 0
    erp_read: int = 0
    in_step: int = 0
    findings: list[Finding] = field(default_factory=list)
    repairs: list[repair.Repair] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        counted = Counter(f.kind.value for f in self.findings)
        return {kind.value: self.in_step if kind is Kind.in_step else counted[kind.value] for kind in Kind}

    def as_json(self) -> dict[str, Any]:
        by_finding = {id(r.finding): r for r in self.repairs}
        findings = []
        for finding in self.findings:
            out = finding.as_json()
            if id(finding) in by_finding:
                out["repair"] = by_finding[id(finding)].as_json()
            findings.append(out)
        return {
            "entity": self.entity.value,
            "mode": self.mode,
            "read": {"cw": self.cw_read, "erp": self.erp_read},
            "counts": self.counts(),
            "findings": findings,
        }


@dataclass
class Report:
    client_id: str
    provider: str
    entities: list[EntityReport] = field(default_factory=list)
    erp_requests: int = 0
    seconds: float = 0.0
    published: int = 0

    @property
    def drift(self) -> int:
        return sum(len(e.findings) for e in self.entities)

    @property
    def records(self) -> int:
        return sum(max(e.cw_read, e.erp_read) for e in self.entities)

    def as_json(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "provider": self.provider,
            "drift": self.drift,
            "published": self.published,
            "erp_requests": self.erp_requests,
            "seconds": round(self.seconds, 3),
            "entities": [e.as_json() for e in self.entities],
        }


def budget_of(settings: SettingsReader) -> Budget:
    """A share (setting ``reconcile_share``) of the connection's cap; no cap, no pacing."""
    cap = settings.positive_integer("max_requests_per_minute")
    share = settings.share("reconcile_share", DEFAULT_SHARE)
    return Budget(ConnectionThrottle(None if cap is None else max(1, int(cap * share))))


def _ignore(side: str, read: int) -> None:
    pass


class Reconciler:
    """Reconciles one client's connection. ``provider`` is the connection's own instance where the
    worker runs (its throttle then counts these requests with the live ones)."""

    def __init__(
        self,
        db: Database,
        cw: CWReader,
        spec: ConnectionSpec,
        provider: ReconcilingProvider,
        bus: Bus | None = None,
        *,
        progress: Progress = _ignore,
        page_size: int = sides.ERP_PAGE,
    ) -> None:
        self.db, self.cw, self.spec, self.provider, self.bus = db, cw, spec, provider, bus
        self.page_size = page_size
        self.settings = SettingsReader.of(spec)
        self.progress = progress
        self.budget = budget_of(self.settings)
        self._external_links: dict[Entity, dict[str, str]] = {}

    async def run(self, options: Options) -> Report:
        started = time.monotonic()
        report = Report(self.spec.client_id, self.spec.kind)
        winners = {e: repair.winner(self.settings, e) for e in options.entities}  # bad setting: fail first
        max_deletes = self.settings.positive_integer(repair.MAX_DELETES_SETTING) or repair.DEFAULT_MAX_DELETES
        for entity in options.entities:
            entity_report = await self._entity(entity, options)
            if options.repair:
                planned = [
                    repair.plan(self.spec.client_id, self.spec.kind, f, winners[entity])
                    for f in entity_report.findings
                ]
                entity_report.repairs = repair.held_back(planned, max_deletes)
                report.published += await self._publish(entity_report.repairs)
            report.entities.append(entity_report)
        report.erp_requests = self.budget.used
        report.seconds = time.monotonic() - started
        return report

    async def _publish(self, repairs: list[repair.Repair]) -> int:
        messages = [repair.message(r) for r in repairs if r.envelope is not None]
        if messages:
            if self.bus is None:
                raise RuntimeError("a repair needs the bus to publish its events on")
            await self.bus.publish(messages)
        return len(messages)

    def _mode(self, entity: Entity, options: Options, anchor: state.Anchor | None, now: dt.datetime) -> str:
        if options.since is not None:
            return "since"
        if options.full or anchor is None or anchor.full_at is None:
            return "full"
        days = self.settings.positive_number("reconcile_full_after_days", FULL_AFTER_DAYS)
        return "full" if now - anchor.full_at > dt.timedelta(days=days) else "incremental"

    async def _entity(self, entity: Entity, options: Options) -> EntityReport:
        client, kind = self.spec.client_id, self.spec.kind
        now = dt.datetime.now(dt.UTC)
        anchor = await self.db.run(partial(state.get_anchor, client_id=client, entity=entity.value))
        mode = self._mode(entity, options, anchor, now)
        links = await self.db.run(
            partial(state.links_of, client_id=client, provider=kind, entity=entity.value)
        )
        for referenced in REFERENCES.get(entity, ()):
            await self._load_external_links(referenced)
        incremental = mode == "incremental" and anchor is not None
        cw_records, cw_anchor = await sides.read_cw(
            self.cw,
            client,
            entity,
            cursor=anchor.cw if incremental and anchor else None,
            since=options.since,
            progress=self.progress,
        )
        erp_since = anchor.erp if incremental and anchor else None
        if options.since is not None:
            erp_since = self.provider.anchor_at(options.since)
        erp_records, erp_anchor = await sides.read_erp(
            self.provider,
            entity,
            erp_since,
            self.budget,
            self._resolve,
            self.progress,
            page_size=self.page_size,
        )
        report = EntityReport(entity, mode, len(cw_records), len(erp_records))
        if incremental and anchor is not None:
            await self._pending(entity, anchor.pending, cw_records, erp_records)
        matched = matching.match(cw_records, erp_records, links)
        if mode != "full":
            await matching.complete(
                cw_records, matched, links, partial(self._read_erp, entity), partial(self._read_cw, entity)
            )
        self._judge(report, cw_records, matched, links)
        if mode != "since":
            full_at = now if mode == "full" else (anchor.full_at if anchor else None)
            pending = tuple((f.cw_id, f.external_id) for f in report.findings)
            saved = state.Anchor(cw_anchor, erp_anchor, full_at, pending)
            await self.db.run(partial(state.save_anchor, client_id=client, entity=entity.value, anchor=saved))
        return report

    async def _pending(
        self,
        entity: Entity,
        pending: state.Pending,
        cw_records: dict[str, CWState],
        erp_records: list[ErpSide],
    ) -> None:
        """What the last run found out of step, read again whether it changed or not."""
        listed = {side.listed.external_id for side in erp_records}
        for cw_id, external_id in pending:
            if cw_id is not None:
                if cw_id not in cw_records:
                    cw_records[cw_id] = await self._read_cw(entity, cw_id)
            elif external_id is not None and external_id not in listed:
                side = await self._read_erp(entity, external_id, None, None)
                if side is not None:
                    erp_records.append(side)

    def _judge(
        self,
        report: EntityReport,
        cw_records: dict[str, CWState],
        matched: matching.Matched,
        links: dict[str, Link],
    ) -> None:
        for cw_id, cw_state in cw_records.items():
            found = matching.judge(report.entity, cw_state, matched.pairs.get(cw_id), links.get(cw_id))
            if found is None:
                continue
            if found.kind is Kind.in_step:
                report.in_step += 1
            else:
                report.findings.append(found)
        for side in matched.unpaired:
            unpaired = matching.judge_unpaired(report.entity, side)
            if unpaired is not None:
                report.findings.append(unpaired)

    async def _load_external_links(self, entity: Entity) -> None:
        if entity in self._external_links:
            return
        links = await self.db.run(
            partial(
                state.links_of, client_id=self.spec.client_id, provider=self.spec.kind, entity=entity.value
            )
        )
        self._external_links[entity] = {
            link.external_id: cw_id for cw_id, link in links.items() if link.external_id and not link.deleted
        }

    def _resolve(self, entity: Entity, external_id: str) -> str | None:
        return self._external_links.get(entity, {}).get(external_id)

    async def _read_erp(
        self, entity: Entity, external_id: str | None, cw_id: str | None, number: str | None
    ) -> ErpSide | None:
        return await sides.read_erp_one(
            self.provider,
            entity,
            self.budget,
            self._resolve,
            external_id=external_id,
            cw_id=cw_id,
            number=number,
        )

    async def _read_cw(self, entity: Entity, cw_id: str) -> CWState:
        return await sides.read_cw_one(self.cw, self.spec.client_id, entity, cw_id)
