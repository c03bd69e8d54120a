"""Reconciliation end to end, against the sandbox ERP and the three vendor fakes over real HTTP.

Drift is made on purpose (a record created while the connection was disabled, a dead letter purged,
an ERP-side edit whose webhook was dropped, a deleted link target); ``reconcile`` finds exactly
those, ``repair`` fixes them through the worker with one write each and no ping-pong, and a second
run finds nothing.
"""

from __future__ import annotations

import pytest

from contracts import Entity
from tests.integration.reconcile_rig import CLIENT, KINDS, Rig, customer, reconcile_rig
from worker.metrics import Metrics
from worker.reconcile.compare import Kind
from worker.reconcile.run import Report
from worker.reconcile.schedule import Scheduler


def found(report: Report) -> set[tuple[str, str | None]]:
    return {(f.kind.value, f.cw_id) for e in report.entities for f in e.findings}


async def _steady(rig: Rig, *numbers: int) -> None:
    for n in numbers:
        await rig.cw.cw.user_change(CLIENT, Entity.customer, customer(n).model_dump(mode="json"))
    await rig.quiet()


async def _drift(rig: Rig) -> str:
    """Customers 1..4 in step, then: 5 created and 2 changed in CW while the connection was off (their
    dead letters purged), 1 edited and 4 deleted in the ERP with their webhooks dropped."""
    await _steady(rig, 1, 2, 3, 4)
    rig.set_connection(enabled=False)
    await rig.cw.cw.user_change(CLIENT, Entity.customer, customer(5).model_dump(mode="json"))
    await rig.cw.cw.user_change(CLIENT, Entity.customer, customer(2, "Changed in CW").model_dump(mode="json"))
    await rig.quiet()
    assert await rig.purge_dead_letters() == 2
    rig.set_connection(enabled=True)
    with rig.webhooks_dropped():
        field = rig.erp_edit(customer(1))
        rig.erp_delete(customer(4))
    return field


async def _check(rig: Rig, field: str) -> None:
    report = await rig.reconcile(entities=(Entity.customer,), full=True)
    assert found(report) == {
        ("different", "c-1"),
        ("different", "c-2"),
        ("missing_in_erp", "c-5"),
        ("gone", "c-4"),
    }
    by_id = {f.cw_id: f for f in report.entities[0].findings}
    assert [d.field for d in by_id["c-1"].differences] == [field]
    assert [(d.field, d.cw) for d in by_id["c-2"].differences] == [("name", "Changed in CW")]
    assert report.entities[0].in_step == 1 and report.drift == 4

    writes, cw_writes = rig.erp_writes(), rig.cw.cw.stats.writes
    repaired = await rig.reconcile(entities=(Entity.customer,), full=True, repair=True)
    again = await rig.reconcile(entities=(Entity.customer,), full=True, repair=True)
    assert repaired.published == again.published == 4, (
        "the same repairs, published twice before the worker ran"
    )
    await rig.quiet()
    assert rig.erp_writes() - writes == 4, "one write per repair, none twice"
    assert rig.cw.cw.stats.writes == cw_writes, "CW wins: nothing written back to CW (no ping-pong)"
    assert rig.actions("inbound").get("inbound", 0) == 0, "our repairs' webhooks were echoes"

    assert found(await rig.reconcile(entities=(Entity.customer,), full=True)) == set()
    assert found(await rig.reconcile(entities=(Entity.customer,))) == set(), "incremental, too"


@pytest.mark.parametrize("kind", KINDS[1:])
async def test_drift_is_found_and_repaired_once_in_each_vendor(sqlite_url: str, kind: str) -> None:
    async with reconcile_rig(sqlite_url, kind) as rig:
        await _check(rig, await _drift(rig))


async def test_drift_is_found_and_repaired_once_in_the_sandbox(migrated_db_url: str) -> None:
    async with reconcile_rig(migrated_db_url, "generic_rest") as rig:
        await _check(rig, await _drift(rig))


@pytest.mark.parametrize("kind", ["generic_rest", "tripletex"])
async def test_when_the_erp_wins_its_records_are_written_to_cw_once(sqlite_url: str, kind: str) -> None:
    async with reconcile_rig(sqlite_url, kind, **{"reconcile_winner.customer": "erp"}) as rig:
        await _steady(rig, 1, 2)
        with rig.webhooks_dropped():
            field = rig.erp_edit(customer(1))
            rig.erp_delete(customer(2))
        report = await rig.reconcile(entities=(Entity.customer,), repair=True, full=True)
        assert found(report) == {("different", "c-1"), ("gone", "c-2")}
        writes = rig.erp_writes()
        await rig.quiet()
        assert (rig.cw.cw.stats.updates, rig.cw.cw.stats.deletes) == (1, 1)
        stored = rig.cw.cw.get(CLIENT, Entity.customer, "c-1")
        assert stored is not None and stored[field] != customer(1).model_dump(mode="json").get(field)
        assert rig.cw.cw.get(CLIENT, Entity.customer, "c-2") is None
        assert rig.erp_writes() == writes, "CW's events of our writes were not pushed back"
        assert found(await rig.reconcile(entities=(Entity.customer,), full=True)) == set()


@pytest.mark.parametrize("winner", ["erp", "cw"])
async def test_more_deletes_than_the_setting_allows_are_held_back(sqlite_url: str, winner: str) -> None:
    """One side's listing empty (a connection pointed at another company, an API answering nothing)
    looks like every record deleted there; repaired, every record was deleted on the other side."""
    settings = {"reconcile_winner.customer": winner, "reconcile_max_deletes": "2"}
    async with reconcile_rig(sqlite_url, "generic_rest", **settings) as rig:
        await _steady(rig, 1, 2, 3)
        with rig.webhooks_dropped():
            for n in (1, 2, 3):
                if winner == "erp":
                    rig.erp_delete(customer(n))  # gone from the ERP
                else:
                    rig.cw.cw.records.pop((CLIENT, "customer", f"c-{n}"))  # CW's listing lost them
        writes = rig.erp_writes()
        report = await rig.reconcile(entities=(Entity.customer,), repair=True, full=True)
        assert len(report.entities[0].findings) == 3 and report.published == 0
        assert all("held back: 3 deletes" in r.note for r in report.entities[0].repairs)
        await rig.quiet()
        kept = [rig.cw.cw.get(CLIENT, Entity.customer, f"c-{n}") is not None for n in (1, 2, 3)]
        assert kept == [winner == "erp"] * 3, "nothing deleted in CW"
        assert rig.erp_writes() == writes, "nothing deleted in the ERP"
        rig.set_connection(reconcile_max_deletes="3")
        assert (await rig.reconcile(entities=(Entity.customer,), repair=True, full=True)).published == 3


async def test_a_record_only_the_erp_has_needs_a_decision_when_cw_wins(sqlite_url: str) -> None:
    async with reconcile_rig(sqlite_url, "generic_rest") as rig:
        assert rig.sandbox is not None
        with rig.webhooks_dropped():
            status, _ = rig.sandbox.sandbox.user_change(
                {"entity": "customer", "data": customer(9).model_dump(mode="json")}
            )
        assert status == 200
        report = await rig.reconcile(entities=(Entity.customer,), repair=True, full=True)
        [finding] = report.entities[0].findings
        [fix] = report.entities[0].repairs
        assert finding.kind is Kind.missing_in_cw and finding.cw_id is None
        assert fix.envelope is None and "reconcile_winner.customer=erp" in fix.note
        assert report.published == 0


def _listings(rig: Rig) -> int:
    """List requests of customers the ERP answered, counted at the ERP."""
    if rig.sandbox is not None:
        return rig.sandbox.sandbox.stats.listings
    assert rig.fake is not None
    return sum(1 for r in rig.fake.fake.requests if r == "GET /customer")


@pytest.mark.parametrize("kind", ["generic_rest", "tripletex"])
async def test_an_incremental_run_reads_only_the_changed_pages(sqlite_url: str, kind: str) -> None:
    async with reconcile_rig(sqlite_url, kind) as rig:
        await _steady(rig, *range(1, 102))
        before = _listings(rig)
        full = await rig.reconcile(entities=(Entity.customer,), full=True)
        assert full.drift == 0 and full.entities[0].in_step == 101
        assert _listings(rig) - before == full.erp_requests == 2, "101 records in pages of 100"

        with rig.webhooks_dropped():
            rig.erp_edit(customer(7))
        before = _listings(rig)
        incremental = await rig.reconcile(entities=(Entity.customer,))
        assert incremental.entities[0].mode == "incremental"
        assert found(incremental) == {("different", "c-7")}
        assert _listings(rig) - before == incremental.erp_requests == 1, "only the page of what changed"
        assert incremental.entities[0].erp_read == 1
        again = await rig.reconcile(entities=(Entity.customer,))
        assert found(again) == {("different", "c-7")}, "reported until repaired, though unchanged since"
        assert again.erp_requests == 2, "the (empty) page of changes, and the record itself"


async def test_the_scheduler_reconciles_and_repairs_on_the_clients_schedule(sqlite_url: str) -> None:
    settings = {"reconcile_schedule": "0 0 1 1 *", "reconcile_repair": "true"}
    async with reconcile_rig(sqlite_url, "generic_rest", **settings) as rig:
        await _steady(rig, 1, 2)
        with rig.webhooks_dropped():
            rig.erp_edit(customer(1))
        metrics = Metrics()
        ran = await Scheduler(rig.app, metrics=metrics).tick()
        assert sorted(job.name for job in ran) == ["reconcile", "validate"], "both never ran: due at once"
        drift = metrics.registry.get_sample_value(
            "cwi_reconcile_drift", {"client": CLIENT, "entity": "customer"}
        )
        assert drift == 1
        runs = metrics.registry.get_sample_value(
            "cwi_reconcile_runs_total", {"client": CLIENT, "result": "drift"}
        )
        assert runs == 1
        assert metrics.registry.get_sample_value("cwi_mapping_problems", {"client": CLIENT}) == 0
        audited = {a: n for a, n in rig.actions("operator").items() if a in ("reconciled", "mapping_checked")}
        assert audited == {"reconciled": 1, "mapping_checked": 1}, "each run is in the audit trail"
        await rig.quiet()
        assert found(await rig.reconcile(entities=(Entity.customer,), full=True)) == set(), "repaired"
        assert await Scheduler(rig.app).tick() == [], "not due again until the schedule fires"


@pytest.mark.parametrize("kind", KINDS)
async def test_every_entity_pushed_reads_back_in_step(sqlite_url: str, kind: str) -> None:
    """Suppliers, projects and invoices too: what the worker wrote, the ERP's mapping reads back the
    same, so a full run over every entity finds nothing."""
    from tests.integration.test_visma_net_inbound import CUSTOMER, INVOICE, PROJECT, SUPPLIER

    project = PROJECT.model_copy(update={"number": "9"}) if kind == "tripletex" else PROJECT
    async with reconcile_rig(sqlite_url, kind) as rig:
        for entity, record in (
            (Entity.customer, CUSTOMER.model_copy(update={"org_number": "974760673"})),
            (Entity.supplier, SUPPLIER),
            (Entity.project, project),
            (Entity.invoice, INVOICE),
        ):
            await rig.cw.cw.user_change(CLIENT, entity, record.model_dump(mode="json"))
        await rig.quiet()
        report = await rig.reconcile(full=True)
        assert [
            (f.entity.value, f.kind.value, f.detail, f.differences)
            for e in report.entities
            for f in e.findings
        ] == []
        assert [e.in_step for e in report.entities] == [1, 1, 1, 1]
