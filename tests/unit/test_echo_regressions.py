"""Echo regressions of issue 10 (and what the burst echo test found), through the message core with
an in-memory CW and ERP; the sync log is real (in-memory SQLite).

The whole story, over HTTP with every vendor's fake, is tests/integration/test_burst_echo.py.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, ClassVar

from config_db import sync_log
from providers.base import ExternalRecord, OutboundChange, PushResult
from tests.dispatching import CommittingDispatcher, StaticConnections
from tests.unit.test_pipeline_inbound import ErpProvider, MemoryCW
from worker.buses.base import Delivery
from worker.db import Database
from worker.messaging.outcomes import Complete
from worker.messaging.retry import RetryPolicy

POLICY = RetryPolicy(delays=(60,), inprocess_attempts=1, base_wait_s=0.001)
T0 = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC)


class Erp(ErpProvider):
    """Pushes answer what ``results`` says, in turn; fetches read ``current``."""

    def __init__(self) -> None:
        super().__init__()
        self.results: list[PushResult] = []

    async def push(self, change: OutboundChange) -> PushResult:
        self.pushed.append(change)
        return self.results.pop(0)


class UniErp(Erp):
    kind: ClassVar[str] = "uni_economy"  # timestamp versions


def _delivery(body: dict[str, Any]) -> Delivery:
    raw = json.dumps(body).encode()
    return Delivery(raw, "t-" + body["id"], 1, dt.datetime.now(dt.UTC), body["client_id"], {}, None)


def cw_event(
    env_id: str, action: str, name: str | None, *, sequence: int, at: dt.datetime = T0, cw_id: str = "c-1"
) -> Delivery:
    body: dict[str, Any] = {
        "id": env_id,
        "client_id": "acme",
        "type": f"customer.{action}",
        "source": "frontend",
        "occurred_at": at.isoformat(),
        "sequence": sequence,
    }
    body |= {"data": {"id": cw_id, "number": "1", "name": name}} if name else {"record_id": cw_id}
    return _delivery(body)


def erp_webhook(
    env_id: str, action: str, version: str | None, name: str | None = None, *, provider: str = "generic_rest"
) -> Delivery:
    external: dict[str, Any] = {"provider": provider, "external_id": "E-1", "version": version}
    if name is not None:
        external["value"] = {"number": "1", "name": name}
    body = {
        "id": env_id,
        "client_id": "acme",
        "type": f"customer.{action}",
        "source": "webhook",
        "occurred_at": T0.isoformat(),
        "external": external,
    }
    return _delivery(body)


async def outcome_of(db: Database, erp: Erp, cw: MemoryCW, delivery: Delivery) -> str:
    outcome = await CommittingDispatcher(db, StaticConnections(erp), POLICY, cw=cw).handle(delivery)
    assert isinstance(outcome, Complete), outcome
    return outcome.result


def detail(db: Database, env_id: str) -> str | None:
    rows = db.run_sync(lambda c: sync_log.entries(c, message_id=env_id))
    return rows[0]["detail"]  # type: ignore[return-value]


# -- the regressions the issue lists -------------------------------------------------------------


async def test_uni_timestamp_versions_are_compared_as_times(db: Database) -> None:
    erp, cw = UniErp(), MemoryCW()
    erp.results = [PushResult("created", "E-1", "2026-11-23T10:00:05.120000+00:00", "h1")]
    assert await outcome_of(db, erp, cw, cw_event("e1", "created", "Acme", sequence=1)) == "created"

    # The create's webhook arrives after a later change was pushed; Uni writes no integer versions.
    stale = erp_webhook("w1", "created", "2026-11-23T10:00:04.9Z", "Acme (first)", provider="uni_economy")
    assert await outcome_of(db, erp, cw, stale) == "echo_ignored"
    assert detail(db, "w1") == (
        "version 2026-11-23T10:00:04.9Z is older than 2026-11-23T10:00:05.120000+00:00, the one we hold"
    )
    # The same instant written another way is the version we hold, not a change.
    same = erp_webhook(
        "w2", "updated", "2026-11-23T12:00:05.12+02:00", "Acme (edited)", provider="uni_economy"
    )
    assert await outcome_of(db, erp, cw, same) == "echo_ignored"
    assert cw.records == {}, "nothing written to CW"


async def test_after_our_own_delete_a_late_create_webhook_is_ignored(db: Database) -> None:
    erp, cw = Erp(), MemoryCW()
    erp.results = [PushResult("created", "E-1", "1", "h1"), PushResult("deleted", "E-1", "2")]
    await outcome_of(db, erp, cw, cw_event("e1", "created", "Acme", sequence=1))
    await outcome_of(db, erp, cw, cw_event("e2", "deleted", None, sequence=2))

    assert await outcome_of(db, erp, cw, erp_webhook("w1", "created", "1", "Acme")) == "echo_ignored"
    assert detail(db, "w1") == "the record was deleted; the change reported is not newer than its delete"
    assert cw.records == {}, "the record did not 'come back' in CW"
    assert len(erp.pushed) == 2, "nor in the ERP"


async def test_two_quick_edits_in_the_erp_never_push_the_older_value_back(db: Database) -> None:
    erp, cw = Erp(), MemoryCW()
    erp.current["E-1"] = ExternalRecord("E-1", {"number": "1", "name": "First"}, "2", "kari")
    await outcome_of(db, erp, cw, erp_webhook("w1", "updated", "2", "First"))
    await outcome_of(db, erp, cw, erp_webhook("w2", "updated", "3", "Second"))
    assert cw.records["cw-1"]["name"] == "Second"

    # CW's events of both writes arrive afterwards, the older one last: neither is pushed.
    assert await outcome_of(db, erp, cw, cw_event("e2", "updated", "Second", sequence=2, cw_id="cw-1")) == (
        "echo_ignored"
    )
    assert await outcome_of(db, erp, cw, cw_event("e1", "updated", "First", sequence=1, cw_id="cw-1")) in (
        "echo_ignored",
        "superseded",
    )
    assert erp.pushed == []


# -- what the burst echo test found ---------------------------------------------------------------


async def test_a_users_delete_in_the_erp_is_not_undone_by_a_late_webhook_of_an_earlier_change(
    db: Database,
) -> None:
    erp, cw = Erp(), MemoryCW()
    erp.current["E-1"] = ExternalRecord("E-1", {"number": "1", "name": "Made in the ERP"}, "1", "kari")
    await outcome_of(db, erp, cw, erp_webhook("w1", "created", "1", "Made in the ERP"))
    await outcome_of(db, erp, cw, erp_webhook("w3", "deleted", "3"))  # overtook the update's webhook
    assert cw.records == {}

    assert await outcome_of(db, erp, cw, erp_webhook("w2", "updated", "2", "Renamed")) == "echo_ignored"
    assert detail(db, "w2") == "the record was deleted; the change reported is not newer than its delete"
    assert cw.records == {}, "the record did not come back in CW"


async def test_a_record_deleted_in_the_erp_before_cw_knew_it_is_not_created_by_its_late_create_webhook(
    db: Database,
) -> None:
    erp, cw = Erp(), MemoryCW()
    assert await outcome_of(db, erp, cw, erp_webhook("w2", "deleted", "2")) == "unchanged"
    assert detail(db, "w2") == "deleted in the ERP, never known to CW"

    assert await outcome_of(db, erp, cw, erp_webhook("w1", "created", "1", "Short-lived")) == "echo_ignored"
    assert cw.records == {}


async def test_a_delete_older_than_the_version_we_hold_is_stale(db: Database) -> None:
    """Visma.net reuses keys: a user deletes the record, our next push creates it again under the
    same number, and only then does the user's delete webhook arrive."""
    erp, cw = Erp(), MemoryCW()
    erp.results = [PushResult("created", "E-1", "1"), PushResult("created", "E-1", "3")]
    await outcome_of(db, erp, cw, cw_event("e1", "created", "Acme", sequence=1))
    await outcome_of(db, erp, cw, cw_event("e2", "updated", "Acme 2", sequence=2))

    assert await outcome_of(db, erp, cw, erp_webhook("w2", "deleted", "2")) == "echo_ignored"
    assert detail(db, "w2") == "deleted at version 2, older than 3, the one we hold"
    link = db.run_sync(lambda c: sync_log.get_link(c, "acme", "generic_rest", "customer", "c-1"))
    assert link is not None and not link.deleted


async def test_a_cw_change_made_before_an_inbound_delete_does_not_bring_the_record_back(db: Database) -> None:
    erp, cw = Erp(), MemoryCW()
    erp.current["E-1"] = ExternalRecord("E-1", {"number": "1", "name": "Made in the ERP"}, "1", "kari")
    await outcome_of(db, erp, cw, erp_webhook("w1", "created", "1", "Made in the ERP"))
    edited_in_cw = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)  # CW's sequence 2, on its way
    await outcome_of(db, erp, cw, erp_webhook("w2", "deleted", "2"))  # a user deleted it in the ERP
    assert cw.records == {}

    late = cw_event("e2", "updated", "Edited in CW", sequence=2, at=edited_in_cw, cw_id="cw-1")
    assert await outcome_of(db, erp, cw, late) == "superseded"
    assert erp.pushed == [], "not re-created in the ERP"


async def test_a_late_webhook_copy_of_a_record_the_erp_deleted_since_is_not_created_in_cw(
    db: Database,
) -> None:
    erp, cw = Erp(), MemoryCW()  # the ERP no longer holds E-1
    assert await outcome_of(db, erp, cw, erp_webhook("w1", "created", "1", "Short-lived")) == "unchanged"
    assert detail(db, "w1") == "deleted in the ERP, never known to CW"
    assert cw.records == {}


async def test_an_erp_change_to_a_record_cw_deleted_meanwhile_does_not_create_it_again(db: Database) -> None:
    erp, cw = Erp(), MemoryCW()
    erp.current["E-1"] = ExternalRecord("E-1", {"number": "1", "name": "Made in the ERP"}, "1", "kari")
    await outcome_of(db, erp, cw, erp_webhook("w1", "created", "1", "Made in the ERP"))
    del cw.records["cw-1"]  # a CW user deletes it; its delete event is still on its way

    assert await outcome_of(db, erp, cw, erp_webhook("w2", "updated", "2", "Renamed")) == "unchanged"
    assert detail(db, "w2") == "deleted in CW meanwhile; its delete event follows"
    assert cw.records == {}, "not created in CW again"
