"""The local bus on real SQLite and PostgreSQL: Service Bus semantics (peek-lock, scheduling,
dead letters, stats, input checks). Sessions, the receive queries and competing processes:
``test_local_bus_sessions.py``; what they share: ``local_bus_rig.py``."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable

import pytest
from sqlalchemy import Connection

from tests.integration.local_bus_rig import (
    LOCK_S,
    MAX_DELIVERIES,
    FakeClock,
    bus,
    clock,
    db,
    message,
    receive_ids,
    receive_one,
)
from worker.buses.base import BusStats, LockLostError, OutgoingMessage
from worker.buses.local import LocalBus
from worker.db import Database

__all__ = ["bus", "clock", "db"]  # the fixtures


# --- peek-lock ----------------------------------------------------------------------------------


async def test_published_message_is_received_locked_and_gone_once_completed(
    bus: LocalBus, clock: FakeClock
) -> None:
    await bus.publish([message("m1", "acme", properties={"kind": "invoice.created"})])

    delivery = await receive_one(bus)

    assert delivery.body == b'{"id": "m1"}'
    assert (delivery.message_id, delivery.session_id, delivery.delivery_count) == ("m1", "acme", 1)
    assert delivery.properties == {"kind": "invoice.created"}
    assert delivery.enqueued_at == clock.in_(0)
    assert await bus.receive(10, 0) == []
    await bus.complete(delivery)
    assert await bus.stats() == BusStats(0, 0, 0, 0, {})


async def test_publishing_a_known_message_id_again_is_a_no_op(bus: LocalBus) -> None:
    await bus.publish([message("m1", body=b"first")])
    await bus.publish([message("m1", body=b"second"), message("m2"), message("m2", body=b"again")])

    got = await bus.receive(10, 0)

    assert [(d.message_id, d.body) for d in got] == [("m1", b"first"), ("m2", b'{"id": "m2"}')]


async def test_expired_lock_is_redelivered_with_a_higher_count_and_the_old_lock_is_void(
    bus: LocalBus, clock: FakeClock
) -> None:
    await bus.publish([message("m1")])
    first = await receive_one(bus)
    clock.advance(LOCK_S + 1)

    second = await receive_one(bus)

    assert (second.message_id, second.delivery_count) == ("m1", 2)
    with pytest.raises(LockLostError):
        await bus.complete(first)
    await bus.complete(second)
    assert await bus.stats() == BusStats(0, 0, 0, 0, {})


async def test_completing_after_the_lock_expired_fails_even_if_nobody_took_it(
    bus: LocalBus, clock: FakeClock
) -> None:
    await bus.publish([message("m1")])
    delivery = await receive_one(bus)
    clock.advance(LOCK_S + 1)

    with pytest.raises(LockLostError):
        await bus.complete(delivery)
    assert (await receive_one(bus)).delivery_count == 2


async def test_a_journaled_completion_commits_the_journal_with_the_completion(
    bus: LocalBus, db: Database, clock: FakeClock
) -> None:
    await db.run(lambda c: c.exec_driver_sql("CREATE TABLE journal_probe (name VARCHAR(16))"))

    def journal(name: str) -> Callable[[Connection], None]:
        def work(c: Connection) -> None:
            c.exec_driver_sql(f"INSERT INTO journal_probe VALUES ('{name}')")

        return work

    await bus.publish([message("m1"), message("m2")])
    first, second = await bus.receive(2, 0)
    await bus.complete(first, journal("first"))
    clock.advance(LOCK_S + 1)
    # The second lock expired: the completion fails, but what the journal records stays true.
    with pytest.raises(LockLostError):
        await bus.complete(second, journal("second"))

    names = await db.run(lambda c: sorted(r[0] for r in c.exec_driver_sql("SELECT name FROM journal_probe")))
    await db.run(lambda c: c.exec_driver_sql("DROP TABLE journal_probe"))  # the session's database is shared
    assert names == ["first", "second"]
    assert await receive_ids(bus) == ["m2"]


async def test_a_settled_message_cannot_be_settled_again(bus: LocalBus) -> None:
    await bus.publish([message("m1")])
    delivery = await receive_one(bus)
    await bus.complete(delivery)

    for settle in (
        bus.complete(delivery),
        bus.abandon(delivery),
        bus.renew_lock(delivery),
        bus.dead_letter(delivery, "ProviderRejected", "late"),
        bus.reschedule(delivery, 60, {}),
    ):
        with pytest.raises(LockLostError):
            await settle
    assert await bus.stats() == BusStats(0, 0, 0, 0, {})


async def test_renewing_extends_the_lock_from_now(bus: LocalBus, clock: FakeClock) -> None:
    await bus.publish([message("m1")])
    delivery = await receive_one(bus)
    clock.advance(LOCK_S - 5)
    await bus.renew_lock(delivery)
    clock.advance(LOCK_S - 5)  # past the first lock, inside the renewed one

    assert await bus.receive(10, 0) == []
    await bus.complete(delivery)


async def test_renewing_an_expired_lock_fails(bus: LocalBus, clock: FakeClock) -> None:
    await bus.publish([message("m1")])
    delivery = await receive_one(bus)
    clock.advance(LOCK_S + 1)

    with pytest.raises(LockLostError):
        await bus.renew_lock(delivery)


async def test_abandoned_message_is_redelivered_at_once_with_a_higher_count(bus: LocalBus) -> None:
    await bus.publish([message("m1")])
    first = await receive_one(bus)
    await bus.abandon(first)

    second = await receive_one(bus)

    assert (second.message_id, second.delivery_count) == ("m1", 2)
    with pytest.raises(LockLostError):
        await bus.abandon(first)


async def test_message_past_max_delivery_count_is_dead_lettered_and_its_session_moves_on(
    bus: LocalBus,
) -> None:
    await bus.publish([message("m1", "acme"), message("m2", "acme")])
    for attempt in range(1, MAX_DELIVERIES + 1):
        delivery = await receive_one(bus)
        assert (delivery.message_id, delivery.delivery_count) == ("m1", attempt)
        await bus.abandon(delivery)

    assert await receive_ids(bus) == ["m2"]
    [dead] = await bus.dead_letters()
    assert (dead.message_id, dead.reason, dead.delivery_count) == ("m1", "MaxDeliveryCountExceeded", 3)
    assert dead.description == "delivered 3 times without being settled (max delivery count 3)"


# --- scheduling, rescheduling, dead-lettering ----------------------------------------------------


async def test_scheduled_message_is_invisible_until_its_time(bus: LocalBus, clock: FakeClock) -> None:
    await bus.publish([message("later", scheduled_at=clock.in_(60))])

    assert await bus.receive(10, 0) == []
    assert (await bus.stats()).scheduled == 1
    clock.advance(59)
    assert await bus.receive(10, 0) == []
    clock.advance(1)
    assert await receive_ids(bus) == ["later"]


async def test_reschedule_keeps_the_message_in_place_until_its_retry_is_due(
    bus: LocalBus, clock: FakeClock
) -> None:
    await bus.publish([message("m1", "acme", properties={"attempt": 1}), message("m2", "acme")])
    original = await receive_one(bus)

    await bus.reschedule(original, 120, {"attempt": 2})

    assert await bus.receive(10, 0) == [], "m2 waits behind its session's retried message"
    assert await bus.stats() == BusStats(
        active=1, scheduled=1, locked=0, dead_lettered=0, dead_lettered_by_reason={}
    )
    with pytest.raises(LockLostError):
        await bus.complete(original)
    clock.advance(120)
    again = await receive_one(bus)
    assert (again.message_id, again.body, again.session_id) == ("m1", original.body, "acme")
    assert (again.properties, again.delivery_count) == ({"attempt": 2}, 2)
    await bus.complete(again)
    assert (await receive_one(bus)).message_id == "m2"


async def test_a_message_published_for_later_does_not_hold_its_session(
    bus: LocalBus, clock: FakeClock
) -> None:
    later = dt.datetime.fromtimestamp(clock.now + 600, dt.UTC)
    scheduled = OutgoingMessage(b'{"id": "s"}', "s", "acme", scheduled_at=later)
    await bus.publish([scheduled, message("m2", "acme")])
    assert (await receive_one(bus)).message_id == "m2"


async def test_dead_lettered_message_keeps_body_properties_and_reason(
    bus: LocalBus, clock: FakeClock
) -> None:
    await bus.publish([message("m1", "acme", properties={"kind": "customer.updated"})])
    delivery = await receive_one(bus)
    clock.advance(5)

    await bus.dead_letter(delivery, "ProviderRejected", "Tripletex: organizationNumber is invalid")

    assert await bus.receive(10, 0) == []
    [dead] = await bus.dead_letters()
    assert (dead.message_id, dead.body, dead.session_id) == ("m1", delivery.body, "acme")
    assert dead.properties == {"kind": "customer.updated"}
    assert (dead.reason, dead.description) == ("ProviderRejected", "Tripletex: organizationNumber is invalid")
    assert (dead.delivery_count, dead.enqueued_at, dead.dead_lettered_at) == (1, clock.in_(-5), clock.in_(0))


async def test_dead_letters_can_be_resent_once_and_purged_once(bus: LocalBus) -> None:
    await bus.publish([message("m1", "acme"), message("m2", "beta")])
    for delivery in await bus.receive(10, 0):
        await bus.dead_letter(delivery, "UnknownClient", "no connection")
    first, second = await bus.dead_letters()

    assert await bus.resend_dead_letter(first.sequence_number, b'{"fixed": true}', {"replay": "op"})
    assert not await bus.resend_dead_letter(first.sequence_number, b"{}", {})
    resent = await receive_one(bus)
    assert resent.message_id not in ("m1", "m2")
    assert (resent.body, resent.session_id, resent.properties) == (
        b'{"fixed": true}',
        "acme",
        {"replay": "op"},
    )
    assert resent.delivery_count == 1
    assert await bus.purge_dead_letter(second.sequence_number)
    assert not await bus.purge_dead_letter(second.sequence_number)
    assert await bus.dead_letters() == []


# --- stats, waiting, group commit, input checks --------------------------------------------------


async def test_stats_count_each_state(bus: LocalBus, clock: FakeClock) -> None:
    await bus.publish([message(f"m{i}") for i in range(5)] + [message("later", scheduled_at=clock.in_(60))])
    locked = await bus.receive(3, 0)
    await bus.dead_letter(locked[0], "MappingError", "no account for VAT code 25")
    await bus.dead_letter(locked[1], "MappingError", "no account for VAT code 15")

    stats = await bus.stats()

    assert stats == BusStats(
        active=2, scheduled=1, locked=1, dead_lettered=2, dead_lettered_by_reason={"MappingError": 2}
    )


async def test_receive_waits_for_a_message_published_meanwhile(bus: LocalBus) -> None:
    waiting = asyncio.create_task(bus.receive(10, wait_s=10))
    await asyncio.sleep(0.05)
    await bus.publish([message("m1")])

    assert [d.message_id for d in await waiting] == ["m1"]


async def test_concurrent_settles_share_commits_and_a_lost_lock_fails_alone(bus: LocalBus) -> None:
    await bus.publish([message(f"m{i}") for i in range(40)])
    deliveries = await bus.receive(40, 0)
    await bus.complete(deliveries[0])

    results = await asyncio.gather(*(bus.complete(d) for d in deliveries), return_exceptions=True)

    assert [type(r).__name__ for r in results] == ["LockLostError"] + ["NoneType"] * 39
    assert await bus.stats() == BusStats(0, 0, 0, 0, {})


@pytest.mark.parametrize(
    ("bad", "complaint"),
    [
        (message("m1", body=b"\xff\xfe"), "UTF-8"),
        (message("m1", body=b"a\x00b"), "NUL"),
        (message("m1", scheduled_at=dt.datetime(2030, 1, 1)), "naive"),  # naive on purpose
    ],
)
async def test_publish_rejects_what_it_cannot_store_faithfully(
    bus: LocalBus, bad: OutgoingMessage, complaint: str
) -> None:
    await bus.publish([message("m0")])

    with pytest.raises(ValueError, match=complaint):
        await bus.publish([bad, message("m2")])
    assert await receive_ids(bus) == ["m0"]
