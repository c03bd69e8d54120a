"""The behavioural bus suite, continued (``test_bus_behaviour.py`` has the rest): locks, renewed and
expired; one message per client in flight, in order; a connection dropped mid-batch (the peer only).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.integration.bus_harness import (
    Harness,
    bus,
    message,
    nothing_left,
    ordered_bus,
    receive_n,
    require_lock_control,
    require_peer,
)
from worker.buses.base import Delivery, LockLostError
from worker.buses.local import LocalBus

__all__ = ["bus", "ordered_bus"]  # the fixtures: each bus in turn, each bus that orders by session


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
