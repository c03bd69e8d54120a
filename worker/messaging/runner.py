"""The worker loop: receive, run the pipeline concurrently, settle, renew locks, shut down cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from worker import tracing
from worker.buses.base import Bus, Delivery, LockLostError
from worker.db import Database, Journal
from worker.logging import get_logger, redactor
from worker.messaging.locks import LockKeeper
from worker.messaging.outcomes import Abandon, Complete, DeadLetter, Outcome, Retry
from worker.messaging.retry import ATTEMPT_PROPERTY
from worker.stopping import stop_if_cancelled

log = get_logger()


class Handler(Protocol):
    """What the runner needs of the message handler (``worker.messaging.dispatch.Dispatcher``, or a
    wrapper of it): an Outcome whose journal the runner commits with the settlement."""

    db: Database

    async def handle(self, delivery: Delivery) -> Outcome: ...


@dataclass
class RunStats:
    """Counts by outcome: created, updated, …, duplicate, retry, abandoned, dead:<reason>."""

    counts: Counter[str] = field(default_factory=Counter)

    @property
    def processed(self) -> int:
        return sum(self.counts.values())


class Worker:
    def __init__(
        self,
        bus: Bus,
        pipeline: Handler,
        *,
        concurrency: int = 16,
        prefetch: int = 0,
        shutdown_grace_s: float = 30.0,
        on_settled: Callable[[Outcome], None] | None = None,
        housekeeping: Callable[[], Awaitable[object]] | None = None,
        housekeeping_s: float = 300.0,
    ) -> None:
        self.bus = bus
        self.pipeline = pipeline
        self.concurrency = concurrency
        self.capacity = concurrency + prefetch
        """Messages held at once: ``concurrency`` being handled plus ``prefetch`` locked ahead."""
        self.shutdown_grace_s = shutdown_grace_s
        self.on_settled = on_settled
        self._housekeeping = housekeeping
        self._housekeeping_s = housekeeping_s
        self.stats = RunStats()
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        """Set when a message finishes (its slot is free), the bus has new messages, or we stop."""
        bus.on_arrival(self._wake.set)
        self._settling = 0
        self._inflight: dict[asyncio.Task[None], Delivery] = {}
        self.locks = LockKeeper(bus)

    def stop(self) -> None:
        """Stop receiving; in-flight work gets ``shutdown_grace_s`` to finish (signal handlers call this)."""
        self._stopping.set()
        self._wake.set()

    async def run(self, *, until_idle: bool = False) -> RunStats:
        log.info(
            "worker started",
            bus=type(self.bus).__name__,
            concurrency=self.concurrency,
            prefetch=self.capacity - self.concurrency,
            until_idle=until_idle,
        )
        started = time.monotonic()
        try:
            return await self._run(until_idle)
        finally:
            log.info(
                "worker stopped",
                processed=self.stats.processed,
                outcomes=dict(sorted(self.stats.counts.items())),
                seconds=round(time.monotonic() - started, 1),
            )

    async def _run(self, until_idle: bool) -> RunStats:
        await self._open_bus()
        background = [asyncio.create_task(self.locks.run())]
        if self._housekeeping is not None:
            background.append(asyncio.create_task(self._keep_house(self._housekeeping)))
        try:
            await self._receive_loop(until_idle)
        finally:
            await self._drain()
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
        return self.stats

    async def _open_bus(self) -> None:
        """Connect the bus before the first receive (bad settings show at once). A stop meanwhile
        wins: SIGTERM while an unreachable namespace is being retried ends the worker at once."""
        await self._unless_stopped(self.bus.open())

    async def _unless_stopped(self, work: Awaitable[None]) -> None:
        """``work``, given up (cancelled) if the worker is told to stop first; its error is raised."""
        doing = asyncio.ensure_future(work)
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({doing, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not doing.done():
                doing.cancel()
                await asyncio.gather(doing, return_exceptions=True)
        if not doing.cancelled():
            doing.result()

    async def _keep_house(self, chore: Callable[[], Awaitable[object]]) -> None:
        """Periodic upkeep (forgetting old echo marks) beside the work; a failure is logged, not fatal."""
        while True:
            try:
                await chore()
            except Exception as exc:  # noqa: BLE001 - retried at the next period
                log.warning("housekeeping failed", error=f"{exc.__class__.__name__}: {exc}")
                stop_if_cancelled()
            await asyncio.sleep(self._housekeeping_s)

    async def _receive_loop(self, until_idle: bool) -> None:
        idle_wait = 0.02
        while not self._stopping.is_set():
            if self.pipeline.db.outage.down:
                await self._wait_for_database()
                continue
            free = self._free_slots()
            # With nothing in flight, give the bus its idle probe: a remote bus needs a moment
            # to attach and deliver before "nothing came" means the queue is idle.
            wait = 0.0 if self._inflight else self.bus.idle_probe_s
            got = await self.bus.receive(free, wait) if free > 0 else []
            for delivery in got:
                self._start(delivery)
            if got:
                idle_wait = 0.02
                if len(got) == free:
                    await self._wait_for_slots()
                continue
            if not self._inflight:
                if until_idle and not await self._others_hold_messages():
                    return
                await self._sleep(idle_wait)
                idle_wait = min(idle_wait * 2, 1.0)
            else:
                await self._wait_for_slot(0.25)

    async def _wait_for_database(self) -> None:
        """While the database is down nothing could be journalled: take no new messages (those in
        flight keep their locks and finish once it answers), until it is back or we are stopped."""
        # An outage that outlasts CWI_OUTAGE_EXIT_S stops the worker with its error.
        await self._unless_stopped(self.pipeline.db.outage.recovered())

    async def _others_hold_messages(self) -> bool:
        """Messages locked by another receiver (perhaps one that died): they come back when their
        locks run out, so the queue is not idle yet. Buses that cannot count locks say 0."""
        try:
            return (await self.bus.stats()).locked > 0
        except Exception:  # noqa: BLE001 - no counts (no Manage rights): idle is what receive says
            return False

    def _start(self, delivery: Delivery) -> None:
        task = asyncio.create_task(self._process(delivery))
        self._inflight[task] = delivery
        self.locks.hold(delivery)
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        delivery = self._inflight.pop(task, None)
        if delivery is not None:
            self.locks.release(delivery)
        self._wake.set()

    async def _wait_for_slots(self) -> None:
        """Wait until a quarter of the slots are free (or a moment after the first frees up), so
        that each receive fetches a batch instead of one message at a time."""
        await self._wait_for_slot(None)
        wanted = max(1, self.capacity // 4)
        deadline = asyncio.get_running_loop().time() + 0.005
        while self._inflight and self._free_slots() < wanted:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0 or self._stopping.is_set():
                break
            await self._wait_for_slot(left)

    async def _wait_for_slot(self, limit_s: float | None) -> None:
        """Until a message finishes, the bus has new messages, the worker is told to stop, or
        ``limit_s`` passes.

        One event set by every task's done-callback (and by the bus): waiting costs the same with 4
        or 400 in flight.
        """
        if not self._inflight or self._stopping.is_set():
            return
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), limit_s)

    async def _sleep(self, seconds: float) -> None:
        """Idle: until the bus has new messages, the worker is told to stop, or ``seconds`` pass."""
        if self._stopping.is_set():
            return
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _process(self, delivery: Delivery) -> None:
        attributes = {
            "messaging.message.id": delivery.message_id,
            "cwi.delivery_count": delivery.delivery_count,
        }
        with tracing.consuming(delivery.properties, **attributes):  # the message's trace (worker/tracing.py)
            await self._handle_and_settle(delivery)

    async def _handle_and_settle(self, delivery: Delivery) -> None:
        try:
            outcome = await self.pipeline.handle(delivery)
        except asyncio.CancelledError:
            await asyncio.shield(self._settle(delivery, Abandon("shutdown")))
            raise
        except Exception as exc:
            log.exception("handler failed", transport_message_id=delivery.message_id, outcome="abandoned")
            outcome = Abandon(f"{exc.__class__.__name__}: {exc}")
        # Settling only waits for the bus: the slot can take the next message meanwhile.
        self._settling += 1
        self._wake.set()
        try:
            await self._settle(delivery, outcome)
        finally:
            self._settling -= 1

    def _free_slots(self) -> int:
        return self.capacity - len(self._inflight) + self._settling

    async def _settle(self, delivery: Delivery, outcome: Outcome) -> None:
        """Settle as the outcome says, its journal committed with the settlement. Nothing escapes:
        a settlement that fails is logged, the message let go (it comes back), and counted."""
        try:
            key = await self._settle_as(delivery, outcome)
        except LockLostError:
            # Someone else owns the message now (or will): its redelivery meets the inbox.
            log.warning(
                "lock lost before settling",
                transport_message_id=delivery.message_id,
                client_id=delivery.session_id,
                outcome="lock_lost",
            )
            key = "lock_lost"
        except Exception as exc:  # noqa: BLE001 - a settlement must never kill its task silently
            log.error(
                "settlement failed; the message will be redelivered",
                transport_message_id=delivery.message_id,
                client_id=delivery.session_id,
                error=f"{exc.__class__.__name__}: {exc}",
                outcome="settle_failed",
            )
            await self._let_go(delivery)
            key = "settle_failed"
        tracing.outcome(key)
        self.stats.counts[key] += 1
        if self.on_settled is not None:
            self.on_settled(outcome)

    async def _settle_as(self, delivery: Delivery, outcome: Outcome) -> str:
        with tracing.step("settle"):
            return await self._settle_by(delivery, outcome)

    async def _settle_by(self, delivery: Delivery, outcome: Outcome) -> str:
        journal = await self._commit_unless_bus_does(outcome.journal)
        match outcome:
            case Complete(result):
                await self.bus.complete(delivery, journal)
                return result
            case Retry(delay_s, attempt, error):
                props = {**delivery.properties, ATTEMPT_PROPERTY: attempt}
                await self.bus.reschedule(delivery, delay_s, props, journal)
                log.warning(
                    "retry scheduled",
                    transport_message_id=delivery.message_id,
                    client_id=delivery.session_id,
                    delay_s=delay_s,
                    attempt=attempt,
                    error=error,
                    outcome="retry",
                )
                return "retry"
            case DeadLetter(reason, description):
                description = redactor.scrub(description)  # an ERP's text may quote a credential
                await self.bus.dead_letter(delivery, reason.value, description, journal)
                log.warning(
                    "dead-lettered",
                    transport_message_id=delivery.message_id,
                    client_id=delivery.session_id,
                    reason=reason.value,
                    description=description,
                    outcome="dead_lettered",
                )
                return f"dead:{reason.value}"
            case Abandon():
                await self.bus.abandon(delivery, journal)
                return "abandoned"
        raise AssertionError(f"unknown outcome {outcome!r}")

    async def _commit_unless_bus_does(self, journal: Journal | None) -> Journal | None:
        """The journal for the bus to commit in its settlement, or None once committed here first."""
        if journal is None or self.bus.journals:
            return journal
        await self.pipeline.db.batched(journal)
        return None

    async def _let_go(self, delivery: Delivery) -> None:
        try:
            await self.bus.abandon(delivery)
        except Exception as exc:  # noqa: BLE001 - its lock then runs out, and it comes back anyway
            log.warning("abandon failed", transport_message_id=delivery.message_id, error=str(exc))

    async def _drain(self) -> None:
        if not self._inflight:
            return
        tasks = list(self._inflight)
        _, pending = await asyncio.wait(tasks, timeout=self.shutdown_grace_s)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("abandoning in-flight messages at shutdown", count=len(pending))
            await asyncio.wait(pending)
