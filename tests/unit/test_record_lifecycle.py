"""A model-based test of one record's lifecycle through the real message core.

Hypothesis interleaves, at random: CW creates, updates and deletes of the record (each event with
its ``sequence``), ERP users' edits and deletes, the ERP's webhooks (ours and the users', late,
reordered, twice, with or without an author), CW's events of our own inbound writes, publishers'
redeliveries of an envelope, ERP faults (503 before or after applying, 429), worker crashes after
the ERP call (the lock lost, nothing journalled), the clock moving on (delayed retries, lock and
lease expiry) and operator replays of dead letters. Everything runs through the real Dispatcher,
the real runner and the local bus on SQLite (with one session per client, and without sessions),
against an ERP and a CW in memory (tests/memory_sides.py) that record every value they received.

Webhooks of our own writes name us as their author, as every provider's do; one without an
author (the rules for ERPs that name none: versions and content) is sent only once the write it
reports is journalled. While a write is in doubt (applied, its outcome not journalled yet) only
the author tells our write from a user's: an anonymous webhook then would be applied to CW.

Invariants: the ERP never receives from us a value older than one it already received, nor
anything after our delete (no resurrection); CW never gets a record back from the worker;
writes stay bounded by the changes made (no ping-pong); and once everything is delivered, retried
and replayed, both sides hold the same value (CW's newest, or the ERP user's applied to CW).
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from config_db import sync_log
from config_db.database import make_engine
from config_db.models import metadata
from tests.dispatching import StaticConnections
from tests.memory_sides import (
    CLIENT,
    FAULTS,
    IDENTITY,
    MemoryCW,
    MemoryErp,
    body,
    fields_of,
    webhook_envelope,
)
from worker.buses.base import OutgoingMessage
from worker.buses.local import LocalBus
from worker.db import Database
from worker.messaging import journal
from worker.messaging.dispatch import Dispatcher
from worker.messaging.retry import RetryPolicy
from worker.messaging.runner import Worker
from worker.operators.dlq import DeadLetterOperations
from worker.operators.letters import Letter

RECORD = "c1"
LOCK_S = 5.0
LEASE_S = 1000.0
MAX_DELIVERIES = 100
POLICY = RetryPolicy(delays=(1.0, 2.0, 4.0), inprocess_attempts=2, base_wait_s=0.0, max_inprocess_wait_s=0.01)
_CW_VALUE = re.compile(r"^cw(\d+)$")


class ModelClock:
    """The bus's time, and the leases' (the journal's): it moves only when the model says, so
    that a run is the same every time it is replayed (hypothesis shrinks by replaying)."""

    def __init__(self) -> None:
        self.start = time.time()
        self.offset = 0.0

    def __call__(self) -> float:
        return self.start + self.offset


class RecordLifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = ModelClock()
        _CLOCKS.append(self.clock)
        self.db = Database(make_engine("sqlite://"))
        metadata.create_all(self.db.engine)
        self.bus = LocalBus(
            self.db, lock_duration_s=LOCK_S, max_delivery_count=MAX_DELIVERIES, clock=self.clock
        )
        self.erp = MemoryErp()
        self.cw = MemoryCW()
        self.dispatcher = Dispatcher(
            self.db, StaticConnections(self.erp), POLICY, cw=self.cw, lease_s=LEASE_S, busy_wait_s=0.0
        )
        self.sessions = True
        self.published: list[dict[str, Any]] = []
        self.delivered_webhooks = 0
        self.delivered_echoes = 0
        self.transport_ids = 0
        self.cw_changes = 0
        self.erp_user_changes = 0

    def teardown(self) -> None:
        try:
            self.run(self._settle_everything())
            self._check_converged()
        finally:
            self.run(self.db.close())
            self.loop.close()
            _CLOCKS.remove(self.clock)

    # --- plumbing ---------------------------------------------------------------------------------

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def publish(self, env: dict[str, Any]) -> None:
        self.run(self._publish(env))

    async def _publish(self, env: dict[str, Any]) -> None:
        self.transport_ids += 1
        session = CLIENT if self.sessions else None
        await self.bus.publish([OutgoingMessage(body(env), f"t{self.transport_ids}", session)])
        self.published.append(env)

    def _worker(self) -> Worker:
        return Worker(self.bus, self.dispatcher, concurrency=1, shutdown_grace_s=5)

    async def _work(self) -> None:
        """One message at a time until none is due: deterministic, so hypothesis can replay it."""
        async with asyncio.timeout(30):
            await self._worker().run(until_idle=True)

    async def _replay(self) -> None:
        operations = DeadLetterOperations(self.db, self.bus, operator="model")
        for dead in await self.bus.dead_letters(100):
            await operations.replay(Letter.of(dead))

    def _cw_live(self) -> bool:
        return self.cw.value(RECORD) is not None

    def _erp_live(self) -> bool:
        record = self.erp.records.get(RECORD)
        return record is not None and record.value is not None

    # --- rules --------------------------------------------------------------------------------

    @initialize(sessions=st.booleans())
    def choose_bus(self, sessions: bool) -> None:
        self.sessions = sessions

    @precondition(lambda self: RECORD not in self.cw.records)
    @rule()
    def cw_create(self) -> None:
        self._cw_change({"id": RECORD, "number": "1001", "name": "cw1"})

    @precondition(lambda self: self._cw_live())
    @rule()
    def cw_update(self) -> None:
        version = self.cw.records[RECORD].version + 1
        self._cw_change({"id": RECORD, "number": "1001", "name": f"cw{version}"})

    @precondition(lambda self: self._cw_live())
    @rule()
    def cw_delete(self) -> None:
        self._cw_change(None)

    def _cw_change(self, value: dict[str, Any] | None) -> None:
        self.cw_changes += 1
        self.publish(self.cw.change(RECORD, value))

    @precondition(lambda self: self._erp_live())
    @rule()
    def erp_user_edit(self) -> None:
        self.erp_user_changes += 1
        assert self.erp.user_edit(RECORD, f"erp{self.erp_user_changes}")

    @precondition(lambda self: self._erp_live())
    @rule()
    def erp_user_delete(self) -> None:
        self.erp_user_changes += 1
        assert self.erp.user_delete(RECORD)

    @precondition(lambda self: self.delivered_webhooks < len(self.erp.announced))
    @rule(skip=st.integers(0, 3), anonymous=st.booleans(), twice=st.booleans())
    def deliver_webhook(self, skip: int, anonymous: bool, twice: bool) -> None:
        """The next webhook the ERP sent, or a later one first (the earlier ones stay due)."""
        env = self._next_webhook(skip, anonymous)
        for _ in range(2 if twice else 1):
            self.publish(env)

    def _next_webhook(self, skip: int, anonymous: bool) -> dict[str, Any]:
        pending = self.erp.announced[self.delivered_webhooks :]
        announced = pending.pop(min(skip, len(pending) - 1))
        self.erp.announced[self.delivered_webhooks :] = [announced, *pending]
        self.delivered_webhooks += 1
        env = webhook_envelope(announced, self.delivered_webhooks)
        if anonymous and env["external"]["author"] == IDENTITY and self._journalled(env):
            del env["external"]["author"]  # as if the ERP named no authors: versions and content decide
        return env

    def _journalled(self, env: dict[str, Any]) -> bool:
        """Our write that this webhook reports is journalled (the link holds its version or a later
        one). Before that, only its author tells our write from a user's: a webhook without one
        is a known blind spot while a write is in doubt (see the module's docstring)."""
        link = self.db.run_sync(lambda c: sync_log.get_link(c, CLIENT, MemoryErp.kind, "customer", RECORD))
        version = env["external"]["version"]
        return link is not None and link.version is not None and int(link.version) >= int(version)

    @precondition(lambda self: self.delivered_echoes < len(self.cw.events))
    @rule()
    def deliver_cw_echo(self) -> None:
        """CW's event of one of our own inbound writes."""
        self.publish(self.cw.events[self.delivered_echoes])
        self.delivered_echoes += 1

    @precondition(lambda self: bool(self.published))
    @rule(pick=st.integers(0, 1000))
    def redeliver(self, pick: int) -> None:
        """A publisher sends an envelope again (a new transport message, the same envelope)."""
        self.publish(self.published[pick % len(self.published)])

    @rule(kind=st.sampled_from(FAULTS), count=st.integers(1, 4))
    def erp_faults(self, kind: str, count: int) -> None:
        self.erp.faults.extend([kind] * count)

    @rule()
    def work(self) -> None:
        self.run(self._work())

    @rule(count=st.integers(2, 3))
    def handle_at_once(self, count: int) -> None:
        """Several due messages in flight together (without sessions: of the same record), each
        settled by the runner as its outcome says."""

        async def together() -> None:
            got = await self.bus.receive(count, 0)
            outcomes = await asyncio.gather(*(self.dispatcher.handle(d) for d in got))
            worker = self._worker()
            for delivery, outcome in zip(got, outcomes, strict=True):
                await worker._settle(delivery, outcome)  # the runner's own settlement

        self.run(together())

    @rule()
    def crash_after_the_erp_call(self) -> None:
        """A worker takes a message and dies after the ERP call: nothing settled or journalled."""

        async def crash() -> None:
            got = await self.bus.receive(1, 0)
            if got:
                await self.dispatcher.handle(got[0])  # the outcome (and its journal) is lost

        self.run(crash())
        self.clock.offset += LOCK_S + 0.5

    @rule(seconds=st.sampled_from([0.5, 1.0, 2.0, 5.0, 30.0]))
    def time_passes(self, seconds: float) -> None:
        self.clock.offset += seconds

    @rule()
    def operator_replays_dead_letters(self) -> None:
        self.run(self._replay())

    # --- invariants ---------------------------------------------------------------------------

    @invariant()
    def the_erp_never_goes_back(self) -> None:
        """Our writes to the ERP: CW values in increasing CW version, nothing after our delete."""
        ours = [w.value for w in self.erp.history.get(RECORD, []) if w.by == "worker"]
        versions = []
        for i, value in enumerate(ours):
            if value is None:
                assert i == len(ours) - 1, f"written after our delete (resurrected): {ours}"
                continue
            match = _CW_VALUE.match(value["name"])
            assert match is not None, f"an ERP user's value came back to the ERP (ping-pong): {ours}"
            versions.append(int(match.group(1)))
        assert versions == sorted(set(versions)), f"a stale or repeated value reached the ERP: {ours}"

    @invariant()
    def cw_never_gets_a_record_back(self) -> None:
        assert self.cw.recreated == [], f"the worker created the record again in CW: {self.cw.recreated}"

    @invariant()
    def writes_are_bounded_by_changes(self) -> None:
        assert self.erp.worker_writes() <= self.cw_changes
        assert self.cw.writes <= self.erp_user_changes

    # --- the end ------------------------------------------------------------------------------

    async def _settle_everything(self) -> None:
        """Stop the faults, deliver everything the sides announced, retry and replay until quiet."""
        self.erp.faults.clear()
        for _ in range(40):
            while self.delivered_webhooks < len(self.erp.announced):
                await self._publish(self._next_webhook(0, anonymous=False))
            while self.delivered_echoes < len(self.cw.events):
                await self._publish(self.cw.events[self.delivered_echoes])
                self.delivered_echoes += 1
            await self._work()
            stats = await self.bus.stats()
            if stats.active == stats.scheduled == stats.locked == 0:
                if stats.dead_lettered == 0:
                    if self.delivered_webhooks == len(self.erp.announced) and self.delivered_echoes == len(
                        self.cw.events
                    ):
                        return
                    continue
                await self._replay()
                continue
            self.clock.offset += LOCK_S + 1
        raise AssertionError(f"the sides never settled: {await self.bus.stats()}")

    def _check_converged(self) -> None:
        self.the_erp_never_goes_back()
        self.cw_never_gets_a_record_back()
        self.writes_are_bounded_by_changes()
        erp = self.erp.records.get(RECORD)
        erp_value = None if erp is None else erp.value
        assert fields_of(erp_value) == fields_of(self.cw.value(RECORD)), (
            f"ERP {erp_value} and CW {self.cw.value(RECORD)} differ; "
            f"ERP history {self.erp.history.get(RECORD)}"
        )


_CLOCKS: list[ModelClock] = []
"""The running machine's clock (the journal's ``now_ms`` reads it while a test runs)."""


def _model_now_ms() -> int:
    return int(_CLOCKS[-1]() * 1000)


FAST = settings(
    max_examples=60,
    stateful_step_count=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
LONG = settings(
    max_examples=500,
    stateful_step_count=50,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_record_lifecycle(monkeypatch: pytest.MonkeyPatch) -> None:
    # Patched by the fixture, so that it is undone even when the run is cut short.
    monkeypatch.setattr(journal, "now_ms", _model_now_ms)
    run_state_machine_as_test(RecordLifecycle, settings=FAST)


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("CWI_MODEL_LONG", "") in ("", "0"),
    reason="500 random walks of 50 steps take minutes: CWI_MODEL_LONG=1 runs them",
)
def test_record_lifecycle_long(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal, "now_ms", _model_now_ms)
    run_state_machine_as_test(RecordLifecycle, settings=LONG)
