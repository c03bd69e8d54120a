"""One behavioural suite for every bus: the local bus, and Azure Service Bus through the real SDK.

``azure`` and ``azure-sessions`` run the adapter against the AMQP test peer (tests/servicebus_peer);
the ``*-connected`` params run it against a real namespace or Microsoft's emulator (see
tests/integration/buses.py: ``CWI_TEST_SERVICEBUS_CONNECTION_STRING``, or the emulator in Docker).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from config_db.database import make_engine
from config_db.models import Base
from tests.integration.buses import (
    LOCK_S,
    MAX_DELIVERIES,
    QUEUE,
    SESSION_QUEUE,
    Namespace,
    OffsetClock,
    azure_bus,
    drain,
)
from tests.servicebus_peer import EntityOptions, ServiceBusPeer
from worker.buses.azure import AzureBus, StatsUnavailableError
from worker.buses.base import Delivery, LockLostError, OutgoingMessage
from worker.buses.local import LocalBus
from worker.db import Database
from worker.settings import load_azure_settings


@dataclass
class Harness:
    name: str
    bus: LocalBus | AzureBus
    orders_sessions: bool  # one message per session in flight, in order
    lock_s: float
    max_deliveries: int
    peer: ServiceBusPeer | None = None
    entity: str = QUEUE
    clock: OffsetClock | None = None

    @property
    def can_expire_locks(self) -> bool:
        return self.clock is not None or self.peer is not None

    async def elapse(self, seconds: float) -> None:
        """Let ``seconds`` pass: on the local bus's clock at once, on Service Bus in real time."""
        if self.clock is not None:
            self.clock.offset += seconds
        else:
            await asyncio.sleep(seconds)

    def expire_locks(self) -> None:
        if self.clock is not None:
            self.clock.offset += self.lock_s + 1
        elif self.peer is not None:
            self.peer.expire_lock(self.entity)


# --- fixtures -----------------------------------------------------------------------------------


async def _local(tmp_path: Path) -> AsyncIterator[Harness]:
    engine = make_engine(f"sqlite:///{tmp_path / 'bus.db'}")
    Base.metadata.create_all(engine)
    db = Database(engine)
    clock = OffsetClock()
    bus = LocalBus(db, queue=QUEUE, lock_duration_s=LOCK_S, max_delivery_count=MAX_DELIVERIES, clock=clock)
    yield Harness(
        "local", bus, orders_sessions=True, lock_s=LOCK_S, max_deliveries=MAX_DELIVERIES, clock=clock
    )
    await bus.close()
    await db.close()


async def _on_peer(peer: ServiceBusPeer, sessions: bool) -> AsyncIterator[Harness]:
    entity = SESSION_QUEUE if sessions else QUEUE
    bus = azure_bus(peer.connection_string, entity, sessions, LOCK_S)
    await bus.open()
    await bus.receive(1, 0)  # with sessions, starts accepting one in the background
    name = "azure-sessions" if sessions else "azure"
    yield Harness(name, bus, sessions, LOCK_S, MAX_DELIVERIES, peer=peer, entity=entity)
    await bus.close()


async def _connected(ns: Namespace, sessions: bool) -> AsyncIterator[Harness]:
    entity = ns.entity(sessions)
    await drain(ns, sessions)
    bus = azure_bus(ns.connection_string, entity, sessions, ns.lock_s)
    await bus.open()
    name = f"{'azure-sessions' if sessions else 'azure'}-connected"
    yield Harness(name, bus, sessions, ns.lock_s, ns.max_deliveries, entity=entity)
    await bus.close()
    await drain(ns, sessions)


BUSES = [
    "local",
    "azure",
    "azure-sessions",
    pytest.param("azure-connected", marks=pytest.mark.connected),
    pytest.param("azure-sessions-connected", marks=pytest.mark.connected),
]


# What does not depend on sessions (publishing, the management endpoint) runs once per namespace kind.
SESSIONLESS = ["local", "azure", pytest.param("azure-connected", marks=pytest.mark.connected)]


@pytest.fixture(params=BUSES)
async def bus(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    kind = request.param
    if kind == "local":
        harnesses = _local(tmp_path)
    elif kind.endswith("-connected"):
        harnesses = _connected(
            request.getfixturevalue("servicebus_namespace"), kind.startswith("azure-sessions")
        )
    else:
        harnesses = _on_peer(request.getfixturevalue("peer"), kind == "azure-sessions")
    async for harness in harnesses:
        yield harness


@pytest.fixture(
    params=["local", "azure-sessions", pytest.param("azure-sessions-connected", marks=pytest.mark.connected)]
)
async def ordered_bus(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    """Buses that order by session id: the local bus always, Service Bus on a session entity."""
    kind = request.param
    if kind == "local":
        harnesses = _local(tmp_path)
    elif kind.endswith("-connected"):
        harnesses = _connected(request.getfixturevalue("servicebus_namespace"), True)
    else:
        harnesses = _on_peer(request.getfixturevalue("peer"), True)
    async for harness in harnesses:
        yield harness


# --- helpers ------------------------------------------------------------------------------------


def message(message_id: str, session: str, **properties: Any) -> OutgoingMessage:
    body = json.dumps({"id": message_id}).encode()
    return OutgoingMessage(body=body, message_id=message_id, session_id=session, properties=properties)


async def receive_n(h: Harness, n: int, timeout_s: float = 15.0) -> list[Delivery]:
    """Exactly ``n`` deliveries (no more are asked for), or fail after ``timeout_s``."""
    got: list[Delivery] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < n:
        assert time.monotonic() < deadline, f"received {len(got)} of {n}: {[d.message_id for d in got]}"
        got += await h.bus.receive(n - len(got), 0.5)
    return got


async def nothing_left(h: Harness) -> bool:
    """No message is active (deliverable or locked); scheduled ones do not count."""
    if h.peer is not None:
        return h.peer.active_count(h.entity) == 0
    return not await h.bus.receive(10, 0 if isinstance(h.bus, LocalBus) else 2.0)


def require_peer(h: Harness) -> ServiceBusPeer:
    if h.peer is None:
        pytest.skip("needs the Service Bus test peer")
    return h.peer


def require_lock_control(h: Harness) -> None:
    if not h.can_expire_locks:
        pytest.skip("cannot expire locks on a real namespace")


# --- peek-lock ----------------------------------------------------------------------------------


async def test_publish_receive_complete(bus: Harness) -> None:
    sent = [message(f"m{i}", f"client-{i}", envelope_id=f"e{i}", type="invoice.created") for i in range(3)]
    await bus.bus.publish(sent)
    got = sorted(await receive_n(bus, 3), key=lambda d: d.message_id)
    assert [(d.message_id, d.session_id, d.body, d.delivery_count) for d in got] == [
        (m.message_id, m.session_id, m.body, 1) for m in sent
    ]
    assert [dict(d.properties) for d in got] == [dict(m.properties) for m in sent]
    await asyncio.gather(*(bus.bus.complete(d) for d in got))
    assert await nothing_left(bus)
    with pytest.raises(LockLostError):  # settled once, never twice
        await bus.bus.complete(got[0])


@pytest.mark.parametrize("bus", SESSIONLESS, indirect=True)
async def test_publish_splits_large_sends_into_batches(bus: Harness) -> None:
    count = 100  # 100 x 4 KB: more than one 256 KB batch
    body = json.dumps({"pad": "x" * 4000}).encode()
    await bus.bus.publish([OutgoingMessage(body, f"m{i}", f"client-{i % 5}") for i in range(count)])
    if bus.peer is not None:
        assert bus.peer.active_count(bus.entity) == count
    elif isinstance(bus.bus, LocalBus):
        assert (await bus.bus.stats()).active == count


# --- delayed retries and dead letters -----------------------------------------------------------


async def test_a_delayed_retry_comes_back_after_its_delay_with_the_new_properties(bus: Harness) -> None:
    await bus.bus.publish([message("m1", "acme", envelope_id="e1", **{"cwi-attempt": 1})])
    [original] = await receive_n(bus, 1)
    await bus.bus.reschedule(original, 1.5, {"envelope_id": "e1", "cwi-attempt": 2})
    if bus.peer is not None and not bus.orders_sessions:
        assert bus.peer.scheduled_count(bus.entity) == 1, "without sessions: a scheduled copy"
    assert not await bus.bus.receive(10, 0.3)
    await bus.elapse(1.5)
    [again] = await receive_n(bus, 1)
    if bus.orders_sessions:
        # Held in place: the same message, still first in its session.
        assert again.message_id == original.message_id
    else:
        assert again.message_id != original.message_id
    assert (again.body, again.session_id) == (original.body, "acme")
    assert dict(again.properties) == {"envelope_id": "e1", "cwi-attempt": 2}
    await bus.bus.complete(again)
    assert await nothing_left(bus)


async def test_a_delayed_retry_holds_its_session_and_no_other(bus: Harness) -> None:
    """Per-client order: the client's later messages wait for the retried one, others go on."""
    if not bus.orders_sessions:
        pytest.skip("only session buses keep a client's order")
    await bus.bus.publish([message("a1", "acme"), message("a2", "acme"), message("g1", "globex")])
    got = {d.message_id: d for d in await receive_n(bus, 2)}
    assert set(got) == {"a1", "g1"}
    await bus.bus.reschedule(got["a1"], 1.5, {"cwi-attempt": 1})
    await bus.bus.complete(got["g1"])
    await bus.bus.publish([message("g2", "globex")])
    [other] = await receive_n(bus, 1)
    assert other.message_id == "g2", "another client is not held up"
    await bus.bus.complete(other)
    assert not await bus.bus.receive(10, 0.3), "a2 must not overtake a1"
    await bus.elapse(1.5)
    [first] = await receive_n(bus, 1)
    assert first.message_id == "a1"
    await bus.bus.complete(first)
    [second] = await receive_n(bus, 1)
    assert second.message_id == "a2"
    await bus.bus.complete(second)


async def test_dead_letters_keep_their_reason_and_can_be_resent_or_purged(bus: Harness) -> None:
    await bus.bus.publish(
        [message("m1", "acme", envelope_id="e1"), message("m2", "globex", envelope_id="e2")]
    )
    got = {d.message_id: d for d in await receive_n(bus, 2)}
    await bus.bus.dead_letter(got["m1"], "ProviderRejected", "400 from the ERP: VAT number is invalid")
    await bus.bus.dead_letter(got["m2"], "RetriesExhausted", "gave up")
    assert await nothing_left(bus)
    by_id = {letter.message_id: letter for letter in await bus.bus.dead_letters()}
    letter = by_id["m1"]
    assert (letter.reason, letter.description) == (
        "ProviderRejected",
        "400 from the ERP: VAT number is invalid",
    )
    assert (letter.body, letter.session_id, dict(letter.properties)) == (
        got["m1"].body,
        "acme",
        {"envelope_id": "e1"},
    )
    assert by_id["m2"].reason == "RetriesExhausted"

    assert await bus.bus.resend_dead_letter(letter.sequence_number, b'{"id":"m1"}', {"replayed": True})
    assert await bus.bus.purge_dead_letter(by_id["m2"].sequence_number)
    assert not await bus.bus.purge_dead_letter(by_id["m2"].sequence_number)
    assert await bus.bus.dead_letters() == []
    [replayed] = await receive_n(bus, 1)
    assert replayed.message_id != "m1"
    assert (replayed.body, replayed.session_id, dict(replayed.properties)) == (
        b'{"id":"m1"}',
        "acme",
        {"replayed": True},
    )
    await bus.bus.complete(replayed)


async def test_abandon_raises_the_count_until_max_delivery_count_dead_letters(bus: Harness) -> None:
    await bus.bus.publish([message("m1", "acme")])
    for attempt in range(1, bus.max_deliveries + 1):
        [delivery] = await receive_n(bus, 1)
        assert (delivery.message_id, delivery.delivery_count) == ("m1", attempt)
        await bus.bus.abandon(delivery)
    assert await nothing_left(bus)
    [letter] = await bus.bus.dead_letters()
    assert (letter.message_id, letter.reason) == ("m1", "MaxDeliveryCountExceeded")


@pytest.mark.parametrize("bus", SESSIONLESS, indirect=True)
async def test_stats(bus: Harness) -> None:
    await bus.bus.publish([message("m1", "acme"), message("m2", "globex")])
    [delivery, *_] = await receive_n(bus, 1)
    await bus.bus.dead_letter(delivery, "UnknownClient", "no connection for acme")
    if bus.peer is not None:
        # The peer, like a namespace reached with Listen/Send rights only, has no management endpoint.
        with pytest.raises(StatsUnavailableError, match="management endpoint cannot be reached: "):
            await bus.bus.stats()
        return
    stats = await bus.bus.stats()
    assert (stats.active, stats.dead_lettered) == (1, 1)
    assert stats.dead_lettered_by_reason == {"UnknownClient": 1}


# --- locks --------------------------------------------------------------------------------------


async def test_renewed_lock_outlives_the_lock_duration_and_an_unrenewed_one_does_not(bus: Harness) -> None:
    if bus.lock_s > 5:
        pytest.skip("the namespace's lock duration is too long to wait out here")
    await bus.bus.publish([message("kept", "acme"), message("lapsed", "globex")])
    got = {d.message_id: d for d in await receive_n(bus, 2)}
    await bus.elapse(bus.lock_s * 0.6)
    await bus.bus.renew_lock(got["kept"])
    await bus.elapse(bus.lock_s * 0.6)
    await bus.bus.complete(got["kept"])
    with pytest.raises(LockLostError):
        await bus.bus.complete(got["lapsed"])
    [again] = await receive_n(bus, 1)
    assert (again.message_id, again.delivery_count) == ("lapsed", 2)
    await bus.bus.complete(again)


async def test_settling_or_rescheduling_after_the_lock_expired_raises_lock_lost(bus: Harness) -> None:
    require_lock_control(bus)
    await bus.bus.publish([message("completed", "acme"), message("rescheduled", "globex")])
    got = {d.message_id: d for d in await receive_n(bus, 2)}
    bus.expire_locks()
    with pytest.raises(LockLostError):
        await bus.bus.complete(got["completed"])
    with pytest.raises(LockLostError):
        await bus.bus.reschedule(got["rescheduled"], 60, {"cwi-attempt": 2})
    # The retry copy was cancelled: the redelivered original is the only live copy.
    if bus.peer is not None:
        assert bus.peer.scheduled_count(bus.entity) == 0
    elif isinstance(bus.bus, LocalBus):
        assert (await bus.bus.stats()).scheduled == 0
    again = await receive_n(bus, 2)
    assert sorted((d.message_id, d.delivery_count) for d in again) == [("completed", 2), ("rescheduled", 2)]
    await asyncio.gather(*(bus.bus.complete(d) for d in again))


# --- ordering -----------------------------------------------------------------------------------


async def test_one_message_per_client_in_flight_in_order_and_clients_in_parallel(
    ordered_bus: Harness,
) -> None:
    h = ordered_bus
    clients = ["acme", "globex", "initech"]
    await h.bus.publish([message(f"{c}-{i}", c) for i in range(3) for c in clients])
    seen: dict[str, list[str]] = {c: [] for c in clients}
    most_in_flight = 0
    deadline = time.monotonic() + 20
    while sum(map(len, seen.values())) < 9:
        assert time.monotonic() < deadline, f"stalled: {seen}"
        in_flight: dict[str, Delivery] = {}
        # Gather what arrives within a moment: several clients should be in flight together.
        for _ in range(6):
            for delivery in await h.bus.receive(10, 0.2):
                assert delivery.session_id not in in_flight, "two messages of one client in flight"
                in_flight[str(delivery.session_id)] = delivery
            if len(in_flight) == len(clients):
                break
        most_in_flight = max(most_in_flight, len(in_flight))
        for client, delivery in in_flight.items():
            seen[client].append(delivery.message_id)
        await asyncio.gather(*(h.bus.complete(d) for d in in_flight.values()))
    assert seen == {c: [f"{c}-{i}" for i in range(3)] for c in clients}
    assert most_in_flight > 1


# --- faults (the test peer only) ----------------------------------------------------------------


async def test_dropped_connection_mid_batch_settles_nothing_twice_and_receiving_recovers(
    bus: Harness,
) -> None:
    peer = require_peer(bus)
    await bus.bus.publish([message(f"m{i}", f"client-{i}") for i in range(4)])
    got = await receive_n(bus, 4)
    await bus.bus.complete(got[0])
    peer.drop_connections()
    # Settled concurrently, as the runner does.
    outcomes = await asyncio.gather(*(bus.bus.complete(d) for d in got[1:]), return_exceptions=True)
    assert all(o is None or isinstance(o, LockLostError) for o in outcomes), outcomes
    completed = {got[0].message_id} | {
        d.message_id for d, o in zip(got[1:], outcomes, strict=True) if o is None
    }
    lost = {d.message_id for d, o in zip(got[1:], outcomes, strict=True) if o is not None}
    # The peer loses locks with the connection, as Microsoft documents; a namespace that keeps them
    # would let the completions through instead. Either way, each message is settled exactly once.
    redelivered = await receive_n(bus, len(lost)) if lost else []
    assert {d.message_id for d in redelivered} == lost
    assert completed | lost == {f"m{i}" for i in range(4)}
    assert not completed & lost
    assert all(d.delivery_count == 2 for d in redelivered)
    await asyncio.gather(*(bus.bus.complete(d) for d in redelivered))
    assert await nothing_left(bus)
    # Receiving and publishing carry on over new connections.
    await bus.bus.publish([message("after", "client-9")])
    [after] = await receive_n(bus, 1)
    await bus.bus.complete(after)
    assert after.message_id == "after"


async def test_a_topic_subscription_works_like_a_queue() -> None:
    entities = {"events": EntityOptions(subscriptions=("worker", "audit"), lock_duration_s=LOCK_S)}
    with ServiceBusPeer(entities=entities) as peer:
        settings = load_azure_settings(
            servicebus_topic="events",
            servicebus_subscription="worker",
            servicebus_connection_string=peer.connection_string,
        )
        bus = AzureBus(settings, lock_duration_s=LOCK_S, retry_total=1, retry_backoff_s=0.1, poll_s=0.5)
        try:
            await bus.open()
            await bus.publish([message("m1", "acme", envelope_id="e1")])
            [delivery] = await receive_n(Harness("topic", bus, False, LOCK_S, MAX_DELIVERIES), 1)
            assert (delivery.message_id, dict(delivery.properties)) == ("m1", {"envelope_id": "e1"})
            await bus.reschedule(delivery, 60, {"envelope_id": "e1", "cwi-attempt": 2})
        finally:
            await bus.close()
        # The retry went to the topic, so every subscription got a copy (as on Service Bus); the copy
        # names the subscription it is for, so that the others' rules can leave it out.
        assert peer.active_count("events/Subscriptions/worker") == 0
        [retry] = peer.messages("events/Subscriptions/worker")
        assert (retry.state, retry.application_properties) == (
            "scheduled",
            {"envelope_id": "e1", "cwi-attempt": 2, "cwi-retry-for": "worker"},
        )
        assert peer.scheduled_count("events/Subscriptions/audit") == 1
