"""Pipeline decisions with a fake provider (the sync log is real: in-memory SQLite)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Callable
from typing import Any, ClassVar

import pytest

from config_db import inbox, sync_log
from contracts import DeadLetterReason
from providers.base import OutboundChange, PreparedRequest, PushResult
from providers.errors import ProviderRejected, TransientError
from tests.dispatching import CommittingDispatcher as Pipeline
from tests.dispatching import StaticConnections
from worker.buses.base import Delivery
from worker.db import Database
from worker.messaging.dispatch import Dispatcher
from worker.messaging.outcomes import Complete, DeadLetter, Retry
from worker.messaging.retry import ATTEMPT_PROPERTY, RetryPolicy


class FakeProvider:
    kind: ClassVar[str] = "fake"

    def __init__(self) -> None:
        self.calls: list[OutboundChange] = []
        self.script: list[Callable[[OutboundChange], PushResult]] = []

    async def push(self, change: OutboundChange) -> PushResult:
        self.calls.append(change)
        if self.script:
            return self.script.pop(0)(change)
        return PushResult("created", f"X-{change.cw_id}", "1", "hash")

    async def check(self) -> str:
        return "fake"

    def preview(self, change: OutboundChange) -> list[PreparedRequest]:
        return []


def raise_(exc: Exception) -> Callable[[OutboundChange], PushResult]:
    def fn(_: OutboundChange) -> PushResult:
        raise exc

    return fn


@pytest.fixture
def provider() -> FakeProvider:
    return FakeProvider()


@pytest.fixture
def pipeline(db: Database, provider: FakeProvider) -> Pipeline:
    policy = RetryPolicy(delays=(60, 300), inprocess_attempts=3, base_wait_s=0.001)
    return Pipeline(db, StaticConnections(provider), policy)


def delivery(env_id: str = "e1", client: str = "acme", attempt: int | None = None, **data: Any) -> Delivery:
    body = {
        "id": env_id,
        "client_id": client,
        "type": "customer.created",
        "source": "frontend",
        "occurred_at": "2026-11-23T10:00:00Z",
        "data": {"id": "c1", "number": "1001", "name": "Acme AS", **data},
    }
    props = {} if attempt is None else {ATTEMPT_PROPERTY: attempt}
    return Delivery(json.dumps(body).encode(), "t-" + env_id, 1, dt.datetime.now(dt.UTC), client, props, None)


def actions(db: Database, env_id: str = "e1") -> list[str]:
    return [e["action"] for e in reversed(db.run_sync(lambda c: sync_log.entries(c, message_id=env_id)))]  # type: ignore[misc]


async def test_invalid_envelope_is_dead_lettered_naming_the_field(pipeline: Pipeline) -> None:
    d = delivery(name=5)
    outcome = await pipeline.handle(d)
    assert isinstance(outcome, DeadLetter) and outcome.reason is DeadLetterReason.InvalidEnvelope
    assert "data.name" in outcome.description


async def test_unknown_client_is_dead_lettered(pipeline: Pipeline, provider: FakeProvider) -> None:
    outcome = await pipeline.handle(delivery(client="ghost"))
    assert outcome == DeadLetter(DeadLetterReason.UnknownClient, "no connection for 'ghost'")
    assert provider.calls == []


async def test_success_journals_intent_then_outcome_and_fills_the_inbox(
    pipeline: Pipeline, db: Database, provider: FakeProvider
) -> None:
    assert await pipeline.handle(delivery()) == Complete("created")
    assert actions(db) == ["pending", "created"]
    assert db.run_sync(lambda c: inbox.finished_outcome(c, "acme", "e1")) == "created"
    link = db.run_sync(lambda c: sync_log.get_link(c, "acme", "fake", "customer", "c1"))
    at = dt.datetime(2026, 11, 23, 10, tzinfo=dt.UTC)
    assert link == sync_log.Link("X-c1", "1", "hash", False, cw_at=at)
    assert provider.calls[0].idempotency_key == "e1" and not provider.calls[0].recovering


async def test_the_outcome_journal_is_left_to_whoever_settles(db: Database, provider: FakeProvider) -> None:
    policy = RetryPolicy(delays=(60, 300), inprocess_attempts=3, base_wait_s=0.001)
    dispatcher = Dispatcher(db, StaticConnections(provider), policy)
    outcome = await dispatcher.handle(delivery())
    assert isinstance(outcome, Complete) and outcome.result == "created" and outcome.journal is not None
    assert actions(db) == ["pending"]
    # Not committed yet: a redelivery now would be a recovery, not a duplicate.
    db.run_sync(outcome.journal)
    assert actions(db) == ["pending", "created"]
    assert await dispatcher.handle(delivery()) == Complete("duplicate")
    assert len(provider.calls) == 1


async def test_redelivered_finished_message_is_a_duplicate_without_a_push(
    pipeline: Pipeline, provider: FakeProvider
) -> None:
    await pipeline.handle(delivery())
    assert await pipeline.handle(delivery()) == Complete("duplicate")
    assert len(provider.calls) == 1


async def test_next_change_of_a_record_carries_its_external_id(
    pipeline: Pipeline, provider: FakeProvider
) -> None:
    await pipeline.handle(delivery("e1"))
    await pipeline.handle(delivery("e2", name="Acme Holding AS"))
    assert provider.calls[1].known_external_id == "X-c1"


async def test_crash_between_push_and_outcome_makes_the_next_attempt_recover(
    pipeline: Pipeline, provider: FakeProvider, db: Database
) -> None:
    provider.script.append(raise_(RuntimeError("worker died mid-push")))
    with pytest.raises(RuntimeError):
        await pipeline.handle(delivery())
    assert await pipeline.handle(delivery()) == Complete("created")
    assert provider.calls[1].recovering is True
    assert actions(db) == ["pending", "pending", "created"]


async def test_transient_errors_are_retried_in_process(pipeline: Pipeline, provider: FakeProvider) -> None:
    provider.script.append(raise_(TransientError("503")))
    assert await pipeline.handle(delivery()) == Complete("created")
    assert len(provider.calls) == 2


async def test_persistent_transient_error_schedules_a_delayed_retry(
    pipeline: Pipeline, provider: FakeProvider, db: Database
) -> None:
    provider.script.extend([raise_(TransientError("503"))] * 3)
    outcome = await pipeline.handle(delivery())
    assert outcome == Retry(60, 1, "503")
    assert len(provider.calls) == 3
    assert actions(db) == ["pending", "retry"]


async def test_a_long_retry_after_is_not_slept_in_process(pipeline: Pipeline, provider: FakeProvider) -> None:
    provider.script.append(raise_(TransientError("429", retry_after=120)))
    outcome = await pipeline.handle(delivery())
    assert isinstance(outcome, Retry) and outcome.delay_s == 120
    assert len(provider.calls) == 1


async def test_retries_exhausted_after_the_last_delay(pipeline: Pipeline, provider: FakeProvider) -> None:
    provider.script.extend([raise_(TransientError("timeout"))] * 3)
    outcome = await pipeline.handle(delivery(attempt=2))
    assert isinstance(outcome, DeadLetter) and outcome.reason is DeadLetterReason.RetriesExhausted
    assert "timeout" in outcome.description


async def test_a_retried_message_recovers_because_the_write_is_in_doubt(
    pipeline: Pipeline, provider: FakeProvider
) -> None:
    provider.script.extend([raise_(TransientError("timeout"))] * 3)
    await pipeline.handle(delivery())
    await pipeline.handle(delivery(attempt=1))
    assert provider.calls[-1].recovering is True


async def test_permanent_error_dead_letters_with_the_providers_text(
    pipeline: Pipeline, provider: FakeProvider, db: Database
) -> None:
    provider.script.append(raise_(ProviderRejected("HTTP 422: org_number fails the mod-11 check")))
    outcome = await pipeline.handle(delivery())
    assert outcome == DeadLetter(
        DeadLetterReason.ProviderRejected, "HTTP 422: org_number fails the mod-11 check"
    )
    assert actions(db) == ["pending", "failed"]
    assert db.run_sync(lambda c: inbox.finished_outcome(c, "acme", "e1")) is None, "a replay must be possible"


class SlowProvider(FakeProvider):
    """Counts how many pushes run at once."""

    def __init__(self) -> None:
        super().__init__()
        self.running = 0
        self.most = 0

    async def push(self, change: OutboundChange) -> PushResult:
        self.running += 1
        self.most = max(self.most, self.running)
        await asyncio.sleep(0.01)
        self.running -= 1
        return await super().push(change)


async def test_max_calls_bounds_the_erp_calls_in_flight_not_the_messages(db: Database) -> None:
    provider = SlowProvider()
    policy = RetryPolicy(delays=(60,), inprocess_attempts=1, base_wait_s=0.001)
    gated = Pipeline(db, StaticConnections(provider), policy, max_calls=2)
    deliveries = [delivery(f"e{i}", id=f"c{i}") for i in range(8)]
    outcomes = await asyncio.gather(*(gated.handle(d) for d in deliveries))
    assert outcomes == [Complete("created")] * 8
    assert provider.most == 2 and len(provider.calls) == 8


class GatedProvider(FakeProvider):
    """Pushes wait until ``open`` is set, and record their client in order."""

    def __init__(self) -> None:
        super().__init__()
        self.open = asyncio.Event()
        self.order: list[str] = []

    async def push(self, change: OutboundChange) -> PushResult:
        await self.open.wait()
        self.order.append(change.cw_id)
        return await super().push(change)


async def _until_waiting(gated: Pipeline, n: int) -> None:
    """Until the one call slot is taken and ``n`` messages wait for it (fixed sleeps raced a loaded
    machine: a message still journalling its intent had not joined the queue when the slot freed)."""
    slots = gated.outbound._calls
    assert slots is not None
    async with asyncio.timeout(10):
        while slots._free > 0 or len(slots._by_age) < n:
            await asyncio.sleep(0.005)


async def test_a_free_call_slot_goes_to_the_client_with_the_fewest_calls(db: Database) -> None:
    """``busy`` has had two calls; when the one slot frees up, ``fresh`` (none yet) goes before it,
    though ``busy``'s message was waiting first (worker/messaging/slots.py)."""
    provider = GatedProvider()
    provider.open.set()
    policy = RetryPolicy(delays=(60,), inprocess_attempts=1, base_wait_s=0.001)
    gated = Pipeline(db, StaticConnections(provider), policy, max_calls=1)
    for i in range(2):
        await gated.handle(delivery(f"b{i}", client="busy", id=f"busy-{i}"))
    provider.open.clear()
    holder = asyncio.create_task(gated.handle(delivery("h", client="holder", id="holder")))
    await _until_waiting(gated, 0)  # the holder has the slot
    waiting = [asyncio.create_task(gated.handle(delivery("b2", client="busy", id="busy-2")))]
    await _until_waiting(gated, 1)
    waiting.append(asyncio.create_task(gated.handle(delivery("f", client="fresh", id="fresh"))))
    await _until_waiting(gated, 2)
    provider.open.set()
    assert await asyncio.gather(holder, *waiting) == [Complete("created")] * 3
    assert provider.order[2:] == ["holder", "fresh", "busy-2"]
