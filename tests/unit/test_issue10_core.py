"""Issue 10's failures that live in the message core, each replayed through the real dispatcher
against both sides in memory (tests/memory_sides.py):

- #1 a child whose parent is not in the ERP yet waits (a retry), it is not dead-lettered;
- #2 echoes: timestamp versions (Uni) compared as times, a late create-webhook after our delete,
  two quick ERP edits whose CW events come back late (every inbound write is remembered);
- #6 an inbound project reaches CW with its customer_id resolved through the customer's link,
  and waits while the customer is not linked yet.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar

import pytest

from config_db.database import make_engine
from config_db.models import metadata
from contracts import Entity
from providers.base import CWDraft, CWReference, OutboundChange, PushResult
from providers.errors import DependencyMissing
from tests.memory_sides import CLIENT, RECORD, T0, ErpRecord, MemoryErp, Sides, fields_of
from worker.db import Database
from worker.messaging.outcomes import Complete, DeadLetter, Retry


class FamilyErp(MemoryErp):
    """Projects need their customer in the ERP first; an ERP project names its customer by the
    ERP's id (``customer_external_id``), which the worker resolves to CW's id."""

    async def push(self, change: OutboundChange) -> PushResult:
        if change.entity is Entity.project and change.record is not None:
            customer_id = change.record.customer_id  # type: ignore[union-attr]
            parent = self.records.get(customer_id)
            if parent is None or parent.value is None:
                raise DependencyMissing(f"customer {customer_id!r}", "the ERP", retry_after=5.0)
        return await super().push(change)

    def to_cw(self, entity: Entity, value: Mapping[str, Any]) -> CWDraft:
        if entity is not Entity.project:
            return super().to_cw(entity, value)
        fields = {k: v for k, v in value.items() if k not in ("id", "customer_external_id")}
        reference = CWReference("customer_id", Entity.customer, str(value["customer_external_id"]))
        return CWDraft(fields, (reference,))


class UniLikeErp(MemoryErp):
    """Versions are ISO timestamps (Uni Economy's UpdatedAt): compared as times, not as digits."""

    kind: ClassVar[str] = "uni_economy"

    def version_text(self, version: int) -> str:
        return (T0 + dt.timedelta(seconds=version)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def _sides(erp: MemoryErp) -> Sides:
    db = Database(make_engine("sqlite://"))
    metadata.create_all(db.engine)
    return Sides(db, erp)


@pytest.fixture
async def family() -> AsyncIterator[Sides]:
    sides = await _sides(FamilyErp())
    yield sides
    await sides.db.close()


@pytest.fixture
async def sides() -> AsyncIterator[Sides]:
    sides = await _sides(MemoryErp())
    yield sides
    await sides.db.close()


@pytest.fixture
async def uni() -> AsyncIterator[Sides]:
    sides = await _sides(UniLikeErp())
    yield sides
    await sides.db.close()


def project(cw_id: str = "p1", customer_id: str = RECORD) -> dict[str, Any]:
    return {
        "id": cw_id,
        "number": "P-1",
        "name": "Roof",
        "customer_id": customer_id,
        "start_date": "2026-11-23",
    }


def project_event(sides: Sides, cw_id: str = "p1", customer_id: str = RECORD) -> dict[str, Any]:
    env = sides.cw.change(cw_id, project(cw_id, customer_id))
    return {**env, "type": "project.created"}


async def test_a_project_whose_customer_is_not_in_the_erp_yet_waits_instead_of_dead_lettering(
    family: Sides,
) -> None:
    """Issue: "MappingError for project.created …: customer number 10002 does not exist"."""
    child = project_event(family)
    outcome = await family.handle(child)
    assert isinstance(outcome, Retry), outcome
    assert outcome.delay_s >= 5.0 and "not in the ERP yet" in outcome.error
    assert await family.handle(family.cw_change("cw1")) == Complete("created")
    assert await family.handle(child, attempt=1) == Complete("created")
    assert family.erp_value("p1") == fields_of(project())


async def test_uni_timestamp_versions_are_compared_as_times(uni: Sides) -> None:
    """Issue: ``_older`` compared only all-digit versions, so a stale Uni webhook was applied. A
    user's edit, overwritten by our later push, reported late: older than what we hold."""
    assert await uni.handle(uni.cw_change("cw1")) == Complete("created")
    assert uni.erp.user_edit(RECORD, "erp1")
    assert await uni.handle(uni.cw_change("cw2")) == Complete("updated")
    assert await uni.handle(uni.webhook(1)) == Complete("echo_ignored")
    assert uni.cw.writes == 0 and fields_of(uni.cw.value(RECORD)) == uni.erp_value()


async def test_a_late_create_webhook_after_our_delete_does_not_bring_the_record_back(sides: Sides) -> None:
    """Issue: after our own delete, a late create-webhook counted as "the record came back"."""
    assert await sides.handle(sides.cw_change("cw1")) == Complete("created")
    assert await sides.handle(sides.cw_change(None)) == Complete("deleted")
    assert await sides.handle(sides.webhook(0, anonymous=True)) == Complete("echo_ignored")
    assert await sides.handle(sides.webhook(1, anonymous=True)) == Complete("echo_ignored")
    assert sides.cw.recreated == [] and sides.cw.value(RECORD) is None and sides.erp_value() is None


@pytest.mark.parametrize("late_order", [(0, 1), (1, 0)], ids=["in-order", "reversed"])
async def test_two_quick_erp_edits_do_not_push_the_older_back(
    sides: Sides, late_order: tuple[int, int]
) -> None:
    """Issue: the reverse fingerprint kept only the last inbound write, so the CW event of the
    first of two quick ERP edits pushed the older value back over the newer one."""
    assert await sides.handle(sides.cw_change("cw1")) == Complete("created")
    assert sides.erp.user_edit(RECORD, "erp1") and sides.erp.user_edit(RECORD, "erp2")
    assert await sides.handle(sides.webhook(1)) == Complete("inbound")
    assert await sides.handle(sides.webhook(2)) == Complete("inbound")
    for index in late_order:  # CW's events of our two writes, late
        outcome = await sides.handle(sides.cw.events[index])
        assert outcome in (Complete("echo_ignored"), Complete("superseded")), outcome
    assert sides.erp.worker_writes() == 1, "nothing pushed back to the ERP"
    assert fields_of(sides.cw.value(RECORD)) == sides.erp_value() == {"number": "1001", "name": "erp2"}


def in_the_erp(sides: Sides, env: dict[str, Any]) -> dict[str, Any]:
    """The ERP holds what its webhook announced (the inbound path reads it again before creating)."""
    external = env["external"]
    sides.erp.records[f"erp-{external['external_id']}"] = ErpRecord(
        external["external_id"], int(external["version"]), dict(external["value"]), "project"
    )
    return env


def erp_project(customer_external_id: str) -> dict[str, Any]:
    """A user's new project in the ERP, announced by its webhook (CW does not know it)."""
    value = {
        "number": "P-7",
        "name": "Garage",
        "start_date": "2026-11-24",
        "customer_external_id": customer_external_id,
    }
    return {
        "id": f"wh-project-{customer_external_id}",
        "client_id": CLIENT,
        "type": "project.created",
        "source": "webhook",
        "occurred_at": "2026-11-24T08:00:00Z",
        "external": {
            "provider": "generic_rest",
            "external_id": "P-7",
            "version": "1",
            "author": "erp-user",
            "value": value,
        },
    }


async def test_an_inbound_project_reaches_cw_with_its_customer_resolved_through_the_link(
    family: Sides,
) -> None:
    """Issue: "the ERP's project is not a valid CW project: customer_id: Field required"."""
    assert await family.handle(family.cw_change("cw1")) == Complete("created")  # customer c1 ↔ X-c1
    assert await family.handle(in_the_erp(family, erp_project("X-c1"))) == Complete("inbound")
    [created] = family.cw.recreated
    assert created["customer_id"] == RECORD and created["name"] == "Garage"


async def test_an_inbound_project_waits_while_its_customer_is_not_linked_yet(family: Sides) -> None:
    outcome = await family.handle(in_the_erp(family, erp_project("X-unknown")))
    assert isinstance(outcome, Retry) and not isinstance(outcome, DeadLetter)
    assert "'X-unknown'" in outcome.error and family.cw.recreated == []
