"""The local bus on real SQLite and PostgreSQL: Service Bus semantics, and competing processes."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import itertools
import json
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection

from config_db.database import make_engine
from config_db.models import Base
from worker.buses.base import BusStats, Delivery, LockLostError, OutgoingMessage
from worker.buses.local import LocalBus
from worker.buses.local_sql import select_ready, select_ready_filtered
from worker.db import Database

LOCK_S = 30
MAX_DELIVERIES = 3
WORKER_PROC = Path(__file__).with_name("_bus_worker_proc.py")


class FakeClock:
    START = 1_700_000_000.0

    def __init__(self) -> None:
        self.now = self.START

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def in_(self, seconds: float) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.now + seconds, dt.UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(make_engine(db_url))
    yield database
    await database.close()


@pytest.fixture
def bus(db: Database, clock: FakeClock) -> LocalBus:
    return LocalBus(db, lock_duration_s=LOCK_S, max_delivery_count=MAX_DELIVERIES, clock=clock)


def message(message_id: str, session: str | None = None, **kwargs: Any) -> OutgoingMessage:
    body = kwargs.pop("body", json.dumps({"id": message_id}).encode())
    return OutgoingMessage(body=body, message_id=message_id, session_id=session, **kwargs)


async def receive_ids(bus: LocalBus, max_count: int = 10) -> list[str]:
    return [d.message_id for d in await bus.receive(max_count, 0)]


async def receive_one(bus: LocalBus) -> Delivery:
    [delivery] = await bus.receive(10, 0)
    return delivery


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


# --- sessions -----------------------------------------------------------------------------------


async def test_a_session_hands_out_one_message_at_a_time_in_order(bus: LocalBus) -> None:
    await bus.publish(
        [message("a1", "a"), message("a2", "a"), message("b1", "b"), message("n1"), message("n2")]
    )

    first = await bus.receive(10, 0)

    assert [d.message_id for d in first] == ["a1", "b1", "n1", "n2"]
    assert await bus.receive(10, 0) == []
    await bus.complete(first[1])  # b1: nothing follows in session b
    assert await bus.receive(10, 0) == []
    await bus.complete(first[0])
    assert await receive_ids(bus) == ["a2"]


async def test_an_expired_head_comes_back_before_its_successor(bus: LocalBus, clock: FakeClock) -> None:
    await bus.publish([message("a1", "a"), message("a2", "a")])
    await receive_one(bus)
    clock.advance(LOCK_S + 1)

    assert await receive_ids(bus) == ["a1"]


async def test_a_locked_message_blocks_an_earlier_one_of_its_session_that_became_visible(
    db: Database, clock: FakeClock
) -> None:
    bus = LocalBus(db, lock_duration_s=300, clock=clock)
    await bus.publish([message("a1", "a", scheduled_at=clock.in_(60)), message("a2", "a")])
    a2 = await receive_one(bus)
    clock.advance(61)

    assert await bus.receive(10, 0) == []
    await bus.complete(a2)
    assert await receive_ids(bus) == ["a1"]


async def test_receive_honours_max_count_in_sequence_order(bus: LocalBus) -> None:
    await bus.publish([message(f"m{i}", f"s{i % 4}" if i % 3 else None) for i in range(12)])

    got = await receive_ids(bus, max_count=3)

    assert got == ["m0", "m1", "m2"]


async def test_queues_are_separate(db: Database, clock: FakeClock) -> None:
    main, other = LocalBus(db, clock=clock), LocalBus(db, queue="other", clock=clock)
    await main.publish([message("m1", "acme")])
    await other.publish([message("o1", "acme")])

    assert await receive_ids(main) == ["m1"]
    assert await receive_ids(other) == ["o1"]
    assert (await other.stats()).locked == 1


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


def _chosen_by_both_queries(conn: Connection, params: dict[str, Any]) -> list[list[str]]:
    return [
        [row.message_id for row in conn.execute(build(10), params)]
        for build in (select_ready, select_ready_filtered)
    ]


async def test_both_receive_queries_choose_the_same_messages(
    bus: LocalBus, db: Database, clock: FakeClock
) -> None:
    # Every session situation at once: scheduled heads, locked heads, expired locks, a dead letter
    # at a session's front, a locked message after a due one, sessionless ones, another queue.
    await LocalBus(db, queue="other", clock=clock).publish([message("o1"), message("o2", "a")])
    await bus.publish(
        [
            message("a1", "a"), message("a2", "a"), message("b1", "b", scheduled_at=clock.in_(25)),
            message("b2", "b"), message("c1", "c"), message("c2", "c"), message("d1", "d"),
            message("d2", "d", scheduled_at=clock.in_(90)), message("d3", "d"), message("n1"),
            message("n2", scheduled_at=clock.in_(20)), message("n3"),
        ]
    )  # fmt: skip
    *_, c1 = await bus.receive(3, 0)  # a1, b2 and c1, locked until t=30
    await bus.dead_letter(c1, "MappingError", "x")
    clock.advance(20)
    assert await receive_ids(bus, 2) == ["c2", "d1"]  # locked until t=50
    expected = {
        20: ["n1", "n2", "n3"],
        26: ["n1", "n2", "n3"],  # b1 is due, but b2 still holds its session
        40: ["a1", "b1", "n1", "n2", "n3"],
        95: ["a1", "b1", "c2", "d1", "n1", "n2", "n3"],
    }

    for at, ids in expected.items():
        clock.now = FakeClock.START + at
        params = {"b_queue": bus.queue, "b_now": int(clock() * 1000)}
        assert await db.run(functools.partial(_chosen_by_both_queries, params=params)) == [ids, ids]


# --- competing processes ------------------------------------------------------------------------


async def _publish_sessions(url: str, sessions: int, per_session: int) -> None:
    db = Database(make_engine(url))
    try:
        await LocalBus(db).publish(
            [
                message(f"s{s}-{i}", f"client-{s:02d}", body=json.dumps({"session": s, "index": i}).encode())
                for i, s in itertools.product(range(per_session), range(sessions))
            ]
        )
    finally:
        await db.close()


def _wait_for(paths: list[Path], procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 30
    while not all(p.exists() for p in paths):
        assert all(proc.poll() is None for proc in procs), "a worker process died while starting"
        assert time.monotonic() < deadline, "worker processes did not start"
        time.sleep(0.02)


@pytest.mark.slow
@pytest.mark.postgres
def test_competing_processes_handle_every_message_once_and_keep_session_order(
    postgres_server: str, tmp_path: Path
) -> None:
    engine = make_engine(postgres_server)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    engine.dispose()
    asyncio.run(_publish_sessions(postgres_server, sessions=30, per_session=20))
    outs = [tmp_path / f"worker{n}.jsonl" for n in range(3)]
    procs = [subprocess.Popen([sys.executable, str(WORKER_PROC), postgres_server, str(out)]) for out in outs]
    try:
        _wait_for([Path(f"{out}.ready") for out in outs], procs)
        for out in outs:
            Path(f"{out}.go").touch()
        assert [proc.wait(timeout=60) for proc in procs] == [0, 0, 0]
    finally:
        for proc in procs:
            proc.kill()
    records = [json.loads(line) for out in outs for line in out.read_text().splitlines()]

    assert sorted((r["session"], r["index"]) for r in records) == [
        (s, i) for s in range(30) for i in range(20)
    ]
    assert {r["delivery_count"] for r in records} == {1}
    assert len({r["pid"] for r in records}) > 1, "the processes did not compete"
    by_session: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        by_session[record["session"]].append(record)
    for session in by_session.values():
        session.sort(key=lambda r: r["seq"])
        assert [r["index"] for r in session] == list(range(20))
        assert all(r["earlier_active"] == 0 for r in session)
        for before, after in itertools.pairwise(session):
            assert before["completing_ns"] < after["received_ns"]
