"""``cwi reconcile``: compare a client's records in CW and in its ERP, and repair the drift."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn
from rich.table import Table

from worker.cli.common import console, exit_with, fail, require_migrated, run_async, settings


class EntityName(StrEnum):
    customer = "customer"
    supplier = "supplier"
    project = "project"
    invoice = "invoice"


def reconcile(
    client_id: Annotated[str, typer.Argument(help="Client id")],
    entity: Annotated[
        list[EntityName] | None, typer.Option("--entity", help="Only this entity (repeatable; default all)")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Read what changed since this ISO time (the sync anchors stay)")
    ] = None,
    full: Annotated[bool, typer.Option("--full", help="Read everything, whatever the anchors")] = False,
    repair: Annotated[
        bool, typer.Option("--repair", help="Publish each fix as an event (reconcile_winner.<entity> wins)")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object, for scripts")] = False,
) -> None:
    """Find records missing on a side, different (field by field), or linked to an ERP record that no
    longer exists. Exit 0 when in step (or every finding was repaired), 1 when drift remains."""
    from contracts import Entity
    from worker.bootstrap import open_app
    from worker.operators.letters import SelectionError, parse_since
    from worker.reconcile.run import Options
    from worker.reconcile.service import ReconcileError, reconcile_client

    try:
        when = parse_since(since) if since else None
    except SelectionError as exc:
        fail(f"--since: {exc}", 2)
    entities = tuple(Entity(e.value) for e in entity) if entity else tuple(Entity)
    options = Options(entities=entities, since=when, full=full, repair=repair)
    s = settings()
    require_migrated(s)

    async def run() -> Any:
        async with open_app(s, http=True) as app:
            if json_out or not console.is_terminal:
                return await reconcile_client(app, client_id, options)
            with Progress(SpinnerColumn(), TextColumn("{task.description}"), transient=True) as bar:
                task = bar.add_task(f"reconciling {client_id}", total=None)
                read = {"cw": 0, "erp": 0}

                def progress(side: str, count: int) -> None:
                    read[side] += count
                    bar.update(
                        task, description=f"reconciling {client_id}: CW {read['cw']}, ERP {read['erp']}"
                    )

                return await reconcile_client(app, client_id, options, progress=progress)

    try:
        report = run_async(run())
    except ReconcileError as exc:
        fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - a provider's typed error or a bad setting: one line
        fail(f"reconciling {client_id} failed: {exc.__class__.__name__}: {exc}")
    if json_out:
        print(json.dumps(report.as_json(), ensure_ascii=False, default=str))
    else:
        _show(report)
    unresolved = report.drift - report.published if repair else report.drift
    exit_with(0 if unresolved == 0 else 1)


def _show(report: Any) -> None:
    table = Table("entity", "mode", "in step", "missing in ERP", "missing in CW", "different", "gone")
    for entity in report.entities:
        counts = entity.counts()
        table.add_row(
            entity.entity.value,
            entity.mode,
            *(str(counts[k]) for k in ("in_step", "missing_in_erp", "missing_in_cw", "different", "gone")),
        )
    console.print(table)
    for entity in report.entities:
        fixes = {id(r.finding): r for r in entity.repairs}
        for finding in entity.findings:
            who = f"{finding.entity.value} {finding.cw_id or '-'} / ERP {finding.external_id or '-'}"
            console.print(f"{finding.kind.value}: {who} (number {finding.number or '-'})", markup=False)
            for diff in finding.differences:
                console.print(f"    {diff.field}: CW {diff.cw!r} / ERP {diff.erp!r}", markup=False)
            if finding.detail:
                console.print(f"    {finding.detail}", markup=False)
            if id(finding) in fixes:
                fix = fixes[id(finding)]
                console.print(f"    repair ({fix.winner} wins): {fix.note}", markup=False)
    console.print(
        f"{report.drift} finding(s), {report.published} repair event(s) published, "
        f"{report.erp_requests} ERP request(s), {report.seconds:.1f} s",
        markup=False,
    )
