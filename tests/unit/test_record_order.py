"""Per-record order and conflicts through the real message core, against both sides in memory
(tests/memory_sides.py); each test is one interleaving the model-based test
(test_record_lifecycle.py) found or that the issue describes, pinned down."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest

from config_db.database import make_engine
from config_db.models import metadata
from contracts import DeadLetterReason
from tests.dispatching import CommittingDispatcher, StaticConnections
from tests.memory_sides import CLIENT, POLICY, RECORD, Sides, body, fields_of
from worker.buses.base import Delivery
from worker.db import Database
from worker.messaging.dispatch import Dispatcher
from worker.messaging.outcomes import Complete, DeadLetter, Retry


@pytest.fixture
async def sides() -> AsyncIterator[Sides]:
    db = Database(make_engine("sqlite://"))
    metadata.create_all(db.engine)
    yield Sides(db)
    await db.close()


async def test_an_erp_edit_of_a_record_cw_deleted_meanwhile_does_not_bring_it_back(sides: Sides) -> None:
    """CW deletes the record while an ERP user edits it: the edit's webhook, handled before CW's
    delete event, must not create the record again in CW (under a new id, linked to the ERP record
    that CW's delete event then deletes: the two sides would stay apart)."""
    assert await sides.handle(sides.cw_change("cw1")) == Complete("created")
    assert sides.erp.user_edit(RECORD, "erp1")
    delete = sides.cw_change(None)  # CW's delete, its event still on the bus
    outcome = await sides.handle(sides.webhook(1))
    assert outcome == Complete("unchanged")
    assert sides.cw.recreated == [] and sides.cw.value(RECORD) is None
    assert await sides.handle(delete) == Complete("deleted")
    assert sides.erp_value() is None


async def test_a_late_webhook_older_than_a_users_delete_does_not_bring_the_record_back(sides: Sides) -> None:
    """An ERP user edits, then deletes the record; the delete's webhook comes first. The edit's
    (older) webhook then is history, not "the record is back": CW must not create it again."""
    assert await sides.handle(sides.cw_change("cw1")) == Complete("created")
    assert sides.erp.user_edit(RECORD, "erp1")
    assert sides.erp.user_delete(RECORD)
    assert await sides.handle(sides.webhook(2)) == Complete("inbound")  # the delete, applied to CW
    assert sides.cw.value(RECORD) is None
    assert await sides.handle(sides.webhook(1)) == Complete("echo_ignored")  # the older edit
    assert await sides.handle(sides.webhook(0)) == Complete("echo_ignored")  # our own create
    assert sides.cw.recreated == [] and sides.cw.value(RECORD) is None


async def test_a_users_delete_older_than_our_later_write_does_not_delete_the_record_in_cw(
    sides: Sides,
) -> None:
    """An ERP user deletes the record, and our next push (an upsert) brings it back in the ERP:
    the delete's webhook, handled after, is older than what the ERP holds and CW keeps the record."""
    assert await sides.handle(sides.cw_change("cw1")) == Complete("created")
    assert sides.erp.user_delete(RECORD)
    assert await sides.handle(sides.cw_change("cw2")) == Complete("created")
    assert await sides.handle(sides.webhook(1)) == Complete("echo_ignored")
    assert fields_of(sides.cw.value(RECORD)) == sides.erp_value() == {"number": "1001", "name": "cw2"}


async def test_an_erp_edit_of_a_cw_record_never_linked_yet_does_not_create_it_again(sides: Sides) -> None:
    """Our create reached the ERP but its outcome was never journalled (the ERP failed after
    applying it), then CW deleted the record: an ERP user's edit, which names CW's id, must not
    create the record in CW again."""
    sides.erp.faults.append("after")
    created = sides.cw_change("cw1")
    assert isinstance(await sides.handle(created), Retry)  # applied in the ERP, no link yet
    assert sides.erp.user_edit(RECORD, "erp1")
    delete = sides.cw_change(None)
    assert await sides.handle(sides.webhook(1)) == Complete("unchanged")
    assert sides.cw.recreated == []
    assert await sides.handle(delete) == Complete("deleted")
    assert sides.erp_value() is None and sides.cw.value(RECORD) is None


async def test_an_older_event_after_a_newer_one_whose_write_is_in_doubt_is_superseded(sides: Sides) -> None:
    """Without sessions: v3's push fails after the ERP applied it (a 5xx after applying, a
    timeout), so its outcome is a retry. v2, delivered meanwhile, must not be pushed over it; and
    v3's own retry still goes out (its earlier attempt set the record's order key)."""
    assert await sides.handle(sides.cw_change("cw1")) == Complete("created")
    v2, v3 = sides.cw_change("cw2"), sides.cw_change("cw3")
    sides.erp.faults.append("after")
    assert isinstance(await sides.handle(v3), Retry)
    assert sides.erp_value() == {"number": "1001", "name": "cw3"}
    assert await sides.handle(v2) == Complete("superseded")
    assert await sides.handle(v3) == Complete("updated")
    assert [w.value["name"] for w in sides.erp.history[RECORD] if w.value] == ["cw1", "cw3"]
    assert sides.erp_value() == fields_of(sides.cw.value(RECORD))


async def test_a_delete_in_doubt_is_not_undone_by_an_older_update(sides: Sides) -> None:
    assert await sides.handle(sides.cw_change("cw1")) == Complete("created")
    v2, delete = sides.cw_change("cw2"), sides.cw_change(None)
    sides.erp.faults.append("after")
    assert isinstance(await sides.handle(delete), Retry)
    assert await sides.handle(v2) == Complete("superseded")
    assert await sides.handle(delete) == Complete("deleted")
    assert sides.erp_value() is None and [w.value for w in sides.erp.history[RECORD]][1:] == [None]


async def test_a_replay_of_an_event_that_ran_out_of_retries_is_pushed(sides: Sides) -> None:
    """Its failed attempts set the record's order key to its own: the replay (the same envelope)
    must still go out, not be taken for a repeat of what the ERP holds."""
    sides.erp.faults.extend(["before", "before"])
    created = sides.cw_change("cw1")
    assert isinstance(await sides.handle(created), Retry)
    retried = await sides.handle_retry(created)
    assert isinstance(retried, DeadLetter) and retried.reason is DeadLetterReason.RetriesExhausted
    assert await sides.handle({**created, "source": "replay"}) == Complete("created")
    assert sides.erp_value() == {"number": "1001", "name": "cw1"}


async def test_an_older_event_after_a_newer_one_that_died_in_flight_and_whose_lease_ran_out(
    sides: Sides,
) -> None:
    """The push of v3 is in doubt (its worker died before journalling), its lease ran out: v2 and
    v1b, older, must not be pushed over it; v3's own redelivery is, and the ERP ends at v3."""
    assert await sides.handle(sides.cw_change("cw1")) == Complete("created")
    v1b, v2, v3 = sides.cw_change("cw1b"), sides.cw_change("cw2"), sides.cw_change("cw3")
    dying = Dispatcher(sides.db, StaticConnections(sides.erp), POLICY, cw=sides.cw, lease_s=0.05)
    short = CommittingDispatcher(sides.db, StaticConnections(sides.erp), POLICY, cw=sides.cw, lease_s=0.05)
    await dying.handle(delivery_of(v3, "t-v3"))  # pushed; the worker dies before journalling
    await asyncio.sleep(0.1)  # its lease runs out before its message comes back
    assert await short.handle(delivery_of(v2, "t-v2")) == Complete("superseded")
    # v2's journal let the lease go: the next older event finds it free, and the doubt kept.
    assert await short.handle(delivery_of(v1b, "t-v1b")) == Complete("superseded")
    assert await short.handle(delivery_of(v3, "t-v3")) in (Complete("updated"), Complete("unchanged"))
    assert (sides.erp_value() or {}).get("name") == "cw3"


def delivery_of(env: dict[str, Any], transport_id: str) -> Delivery:
    return Delivery(body(env), transport_id, 1, dt.datetime.now(dt.UTC), CLIENT, {}, None)


async def test_a_cw_change_made_before_the_erp_users_delete_reached_cw_is_not_pushed(sides: Sides) -> None:
    """CW's user updates the record while an ERP user deletes it; the delete reaches CW first (our
    inbound write deletes it there). CW's update event, older, must not re-create the record in
    the ERP: the sides would end apart (the ERP holding it, CW not)."""
    assert await sides.handle(sides.cw_change("cw1")) == Complete("created")
    update = sides.cw_change("cw2")
    assert sides.erp.user_delete(RECORD)
    assert await sides.handle(sides.webhook(1)) == Complete("inbound")
    assert sides.cw.value(RECORD) is None
    assert await sides.handle(update) == Complete("superseded")
    assert sides.erp_value() is None
    assert await sides.handle(sides.cw.events[0]) == Complete("echo_ignored")  # CW's delete event
