"""The worker end to end in-process, on every bus (tests/integration/worker_rig.py), against the real
sandbox ERP: the same behaviour on the local bus and on Azure Service Bus through the real SDK."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from collections.abc import Callable
from typing import Any, cast

import pytest

from config_db import sync_log
from providers.generic_rest.sandbox.store import Reply
from tests.integration.worker_rig import Rig, env, failure
from worker.buses.local import LocalBus
from worker.messaging.outcomes import Complete
from worker.messaging.runner import RunStats, Worker


async def run_until(worker: Worker, done: Callable[[RunStats], bool], timeout_s: float = 20.0) -> RunStats:
    """Run ``worker`` until its counts satisfy ``done``, then stop it (delayed retries need a live worker)."""
    task = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(timeout_s):
            while not done(worker.stats):
                assert not task.done(), "the worker stopped by itself"
                await asyncio.sleep(0.02)
    finally:
        worker.stop()
        stats = await asyncio.wait_for(task, 15)
    return stats


async def stop_once_the_erp_was_called(rig: Rig, worker: Worker) -> RunStats:
    """Run ``worker`` until the sandbox received its first request, then stop it: work is in flight."""
    task = asyncio.create_task(worker.run())
    async with asyncio.timeout(15):
        while rig.sandbox.sandbox.stats.requests == 0:
            await asyncio.sleep(0.01)
    worker.stop()
    return await asyncio.wait_for(task, 10)


def journal(rig: Rig, message_id: str) -> list[dict[str, object]]:
    """The sync log of one envelope, oldest first."""
    return list(reversed(rig.db.run_sync(lambda c: sync_log.entries(c, message_id=message_id))))


async def test_publish_process_complete(rig: Rig) -> None:
    await rig.publish(*(env(n) for n in range(10)), *(env(n, "globex") for n in range(10)))
    stats = await run_until(rig.worker(), lambda s: s.processed == 20)
    assert stats.counts == {"created": 20}
    writes = await rig.writes()
    assert len(writes) == 20 and set(writes.values()) == {1}
    assert await rig.waiting() == 0


async def test_transient_failure_is_retried_later_and_succeeds(rig: Rig) -> None:
    rig.sandbox.sandbox.failures.append(failure(503, 2))  # both in-process attempts fail
    await rig.publish(env(1))
    worker = rig.worker(delays=(1.0,))
    task = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(20):
            while not worker.stats.processed:
                await asyncio.sleep(0.01)
            assert worker.stats.counts == {"retry": 1}
            while not worker.stats.counts["created"]:
                await asyncio.sleep(0.02)
    finally:
        worker.stop()
        stats = await asyncio.wait_for(task, 15)
    assert stats.counts == {"retry": 1, "created": 1}
    log = journal(rig, "acme-e1")
    assert [e["action"] for e in log] == ["pending", "retry", "pending", "created"]
    assert log[2]["detail"] == "recovering: an earlier attempt may have reached the ERP"
    # Retried later, not at once: the local bus's message waits in place, a session's is held by the
    # worker, otherwise a scheduled copy waits. (Counting what waits raced a loaded machine: the copy
    # of a 1-s delay could be due before the count was read.)
    retried_after = cast(dt.datetime, log[2]["at"]) - cast(dt.datetime, log[1]["at"])
    assert retried_after >= dt.timedelta(seconds=0.5), f"retried {retried_after} after the failure"
    assert await rig.writes() == {"customer/acme-c1": 1}


@pytest.mark.parametrize("retry_after", [float("inf"), 1e12])
async def test_an_erp_asking_to_wait_for_ever_is_retried_within_a_day(rig: Rig, retry_after: float) -> None:
    """Taken as it was, the wait overflowed the retry's due time: its settlement failed on every
    delivery until the message was dead-lettered (Service Bus), or it was due in 31,000 years."""
    rig.sandbox.sandbox.failures.append(failure(503, 2, retry_after=retry_after))
    await rig.publish(env(1))
    stats = await run_until(rig.worker(delays=(1.0,)), lambda s: s.processed == 1)
    assert stats.counts == {"retry": 1}
    assert journal(rig, "acme-e1")[-1]["detail"] == (
        "retry in 86400 s: generic_rest PUT customer/acme-c1: HTTP 503: sandbox: injected HTTP 503"
    )
    assert await rig.dead_letters() == []


@pytest.mark.parametrize("rig", ["local-sqlite"], indirect=True)
async def test_a_worker_stops_though_its_upkeep_fails_on_the_way_out(rig: Rig) -> None:
    """The upkeep's cancellation turned into the database's error (a full disk): caught as a failed
    upkeep, it kept the upkeep going, and the worker it belonged to never ended (nor heeded SIGTERM)."""

    async def upkeep() -> None:
        try:
            await asyncio.Event().wait()  # a statement under way
        except asyncio.CancelledError:
            raise RuntimeError("database or disk is full") from None

    worker = Worker(rig.bus, rig.pipeline((0.2,)), concurrency=2, housekeeping=upkeep, housekeeping_s=300)
    stats = await asyncio.wait_for(worker.run(until_idle=True), 10)
    assert stats.processed == 0


@pytest.mark.parametrize("rig", ["local-sqlite"], indirect=True)
async def test_a_cw_event_dated_years_ahead_is_refused_and_holds_nothing_back(rig: Rig) -> None:
    """Taken as its record's order key, 9999-12-31 made every later change of the record
    ``superseded``: the ERP kept the bogus event's value for good."""
    ahead = env(1, name="From the future")
    ahead["occurred_at"] = "9999-12-31T23:59:59Z"
    later = env(2, name="Customer 2")  # the same record (acme-c1 is env(1)'s, c2 env(2)'s): use one
    later["data"]["id"], later["data"]["number"] = ahead["data"]["id"], ahead["data"]["number"]
    later["type"], later["occurred_at"] = "customer.updated", "2026-11-24T10:00:00Z"
    await rig.publish(ahead)
    stats = await run_until(rig.worker(), lambda s: s.processed == 1)
    assert stats.counts == {"dead:InvalidEnvelope": 1}
    [dead] = await rig.dead_letters()
    assert dead.description.startswith("occurred_at 9999-12-31T23:59:59+00:00 is ")
    assert "days ahead of this worker's clock (at most one)" in dead.description
    await rig.publish(later)
    stats = await run_until(rig.worker(), lambda s: s.processed == 1)
    assert stats.counts == {"created": 1}, "the later change goes through"
    assert await rig.writes() == {"customer/acme-c1": 1}


async def test_retries_exhausted_dead_letters(rig: Rig) -> None:
    rig.sandbox.sandbox.failures.append(failure(503, 100))
    await rig.publish(env(1))
    stats = await run_until(rig.worker(delays=(0.05,)), lambda s: s.counts["dead:RetriesExhausted"] == 1)
    assert stats.counts == {"retry": 1, "dead:RetriesExhausted": 1}
    [dead] = await rig.dead_letters()
    assert dead.reason == "RetriesExhausted" and "503" in dead.description
    assert json.loads(dead.body)["id"] == "acme-e1"


async def test_permanent_failure_dead_letters_with_the_erp_text(rig: Rig) -> None:
    await rig.publish(env(1, org_number="123456789"))
    stats = await run_until(rig.worker(), lambda s: s.processed == 1)
    assert stats.counts == {"dead:ProviderRejected": 1}
    [dead] = await rig.dead_letters()
    assert dead.reason == "ProviderRejected" and "org_number" in dead.description
    assert json.loads(dead.body)["id"] == "acme-e1"
    assert await rig.writes() == {}


async def test_crash_after_the_erp_wrote_is_redelivered_without_a_second_write(rig: Rig) -> None:
    await rig.publish(env(1))
    delivery = await rig.receive_one()
    # The process dies the moment the ERP has applied the write, before its answer arrives.
    sandbox = rig.sandbox.sandbox
    write = sandbox._put

    def write_then_die(entity: str, cw_id: str, body: Any) -> Reply:
        reply = write(entity, cw_id, body)
        handling.cancel()
        return reply

    sandbox._put = write_then_die  # type: ignore[method-assign]
    handling = asyncio.create_task(rig.pipeline().handle(delivery))
    with contextlib.suppress(asyncio.CancelledError):
        await handling
    sandbox._put = write  # type: ignore[method-assign]
    await asyncio.sleep(0.2)  # nothing left running could journal the outcome
    assert handling.cancelled()
    assert await rig.writes() == {"customer/acme-c1": 1}
    assert [e["action"] for e in journal(rig, "acme-e1")] == ["pending"], "the outcome never got journalled"

    await rig.lose_lock(delivery)
    stats = await run_until(rig.worker(), lambda s: s.processed == 1)

    assert sum(stats.counts.values()) == 1 and not any(k.startswith("dead") for k in stats.counts)
    assert await rig.writes() == {"customer/acme-c1": 1}, "the redelivery did not write again"
    log = journal(rig, "acme-e1")
    assert log[1]["detail"] == "recovering: an earlier attempt may have reached the ERP"
    assert await rig.waiting() == 0


async def test_a_redelivery_after_the_outcome_was_journalled_is_a_duplicate(rig: Rig) -> None:
    await rig.publish(env(1))
    delivery = await rig.receive_one()
    outcome = await rig.pipeline().handle(delivery)
    assert outcome == Complete("created") and outcome.journal is not None
    await rig.db.batched(outcome.journal)  # the journal committed (as before a Service Bus settlement)…
    await rig.lose_lock(delivery)  # … then the worker died before settling
    assert (await run_until(rig.worker(), lambda s: s.processed == 1)).counts == {"duplicate": 1}
    assert await rig.writes() == {"customer/acme-c1": 1}


async def test_per_client_order_is_kept(rig: Rig) -> None:
    if not rig.orders_by_client:
        pytest.skip("a Service Bus entity without sessions does not order by client")
    # Each client: created, then three updates of the same record: applied in order, the last wins.
    events = []
    for client in ("acme", "globex"):
        update = {"type_": "customer.updated", "id": f"{client}-c1", "number": "1001"}
        events += [env(1, client), *(env(100 + i, client, name=f"v{i}", **update) for i in range(1, 4))]
    await rig.publish(*events)
    stats = await run_until(rig.worker(concurrency=16), lambda s: s.processed == len(events))
    assert stats.counts == {"created": 2, "updated": 6}
    for client in ("acme", "globex"):
        record = rig.sandbox.sandbox.store.get("customer", f"{client}-c1")
        assert record is not None
        assert (record.data["name"], record.version) == ("v3", 4)


async def test_shutdown_finishes_in_flight_work_and_stops(rig: Rig) -> None:
    rig.sandbox.sandbox._latency_s = 0.3
    await rig.publish(*(env(n, client) for n in range(8) for client in ("acme", "globex")))
    worker = rig.worker(concurrency=4)
    stats = await stop_once_the_erp_was_called(rig, worker)
    assert stats.processed >= 1
    assert set(stats.counts) == {"created"}, "in-flight work finished within the grace period"
    assert await rig.waiting() == 16 - stats.counts["created"], "it stopped receiving; the rest waits"
    if isinstance(rig.bus, LocalBus):
        assert (await rig.bus.stats()).locked == 0


async def test_grace_period_over_abandons_the_rest(rig: Rig) -> None:
    rig.sandbox.sandbox._latency_s = 2.0
    await rig.publish(env(1))
    worker = rig.worker(grace_s=0.1)
    stats = await stop_once_the_erp_was_called(rig, worker)
    assert stats.counts == {"abandoned": 1}
    assert await rig.waiting() == 1, "the abandoned message is ready for the next worker"


async def test_lock_is_renewed_during_a_provider_call_longer_than_the_lock(rig: Rig) -> None:
    if rig.lock_s > 5:
        pytest.skip("the namespace's lock duration is too long to outlast here")
    if isinstance(rig.bus, LocalBus):
        # Its clock is ours: no SDK minimum to respect. A second leaves room for a loaded machine.
        rig.bus.lock_duration_s = rig.lock_s = 1.0
    rig.sandbox.sandbox._latency_s = rig.lock_s * 1.5
    await rig.publish(env(1))
    stats = await run_until(rig.worker(), lambda s: s.processed == 1)
    assert stats.counts == {"created": 1}, "settled under a renewed lock, not lost and redelivered"
    assert await rig.writes() == {"customer/acme-c1": 1}
