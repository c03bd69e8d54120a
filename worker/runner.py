"""The worker loop: receive, run the pipeline concurrently, settle, renew locks, shut down cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from worker.buses.base import Bus, Delivery, JournaledCompletion, LockLostError
from worker.db import Database
from worker.logging import get_logger
from worker.outcomes import Abandon, Complete, DeadLetter, Journal, Outcome, Retry
from worker.retry import ATTEMPT_PROPERTY

log = get_logger()


class Handler(Protocol):
    """What the runner needs of the pipeline (``worker.pipeline.Pipeline``, or a wrapper of it)."""

    db: Database

    async def handle(self, delivery: Delivery, *, defer_journal: bool = False) -> Outcome: ...


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
    ) -> None:
        self.bus = bus
        self.pipeline = pipeline
        self.concurrency = concurrency
        self.capacity = concurrency + prefetch
        """Messages held at once: ``concurrency`` being handled plus ``prefetch`` locked ahead."""
        self.shutdown_grace_s = shutdown_grace_s
        self.on_settled = on_settled
        self.stats = RunStats()
        self._stopping = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._settling = 0
        self._inflight: dict[asyncio.Task[None], Delivery] = {}
        self._locked_at: dict[int, float] = {}

    def stop(self) -> None:
        """Stop receiving; in-flight work gets ``shutdown_grace_s`` to finish (signal handlers call this)."""
        self._stopping.set()
        self._slot_freed.set()

    async def run(self, *, until_idle: bool = False) -> RunStats:
        renewer = asyncio.create_task(self._renew_locks())
        try:
            await self._receive_loop(until_idle)
        finally:
            await self._drain()
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
        return self.stats

    async def _receive_loop(self, until_idle: bool) -> None:
        idle_wait = 0.02
        while not self._stopping.is_set():
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
                if until_idle:
                    return
                await self._sleep(idle_wait)
                idle_wait = min(idle_wait * 2, 1.0)
            else:
                await self._wait_for_slot(0.25)

    def _start(self, delivery: Delivery) -> None:
        task = asyncio.create_task(self._process(delivery))
        self._inflight[task] = delivery
        self._locked_at[id(delivery)] = time.monotonic()
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        delivery = self._inflight.pop(task, None)
        if delivery is not None:
            self._locked_at.pop(id(delivery), None)
        self._slot_freed.set()

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
        """Until a message finishes, the worker is told to stop, or ``limit_s`` passes.

        One event set by every task's done-callback: waiting costs the same with 4 or 400 in flight.
        """
        if not self._inflight or self._stopping.is_set():
            return
        self._slot_freed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._slot_freed.wait(), limit_s)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _process(self, delivery: Delivery) -> None:
        try:
            outcome = await self.pipeline.handle(delivery, defer_journal=True)
        except asyncio.CancelledError:
            await asyncio.shield(self._settle(delivery, Abandon("shutdown")))
            raise
        except Exception as exc:
            log.exception("handler failed", transport_message_id=delivery.message_id, outcome="abandoned")
            outcome = Abandon(f"{exc.__class__.__name__}: {exc}")
        # Settling only waits for the bus: the slot can take the next message meanwhile.
        self._settling += 1
        self._slot_freed.set()
        try:
            await self._settle(delivery, outcome)
        finally:
            self._settling -= 1

    def _free_slots(self) -> int:
        return self.capacity - len(self._inflight) + self._settling

    async def _settle(self, delivery: Delivery, outcome: Outcome) -> None:
        try:
            match outcome:
                case Complete(result, journal):
                    await self._complete(delivery, journal)
                    key = result
                case Retry(delay_s, attempt, error):
                    props = {**delivery.properties, ATTEMPT_PROPERTY: attempt}
                    await self.bus.reschedule(delivery, delay_s, props)
                    key = "retry"
                    log.warning(
                        "retry scheduled", delay_s=delay_s, attempt=attempt, error=error, outcome="retry"
                    )
                case DeadLetter(reason, description):
                    await self.bus.dead_letter(delivery, reason.value, description)
                    key = f"dead:{reason.value}"
                    log.warning(
                        "dead-lettered",
                        transport_message_id=delivery.message_id,
                        client_id=delivery.session_id,
                        reason=reason.value,
                        description=description,
                        outcome="dead_lettered",
                    )
                case Abandon(error):
                    await self.bus.abandon(delivery)
                    key = "abandoned"
        except LockLostError:
            # Someone else owns the message now (or will): its redelivery meets the inbox.
            log.warning(
                "lock lost before settling", transport_message_id=delivery.message_id, outcome="lock_lost"
            )
            key = "lock_lost"
        self.stats.counts[key] += 1
        if self.on_settled is not None:
            self.on_settled(outcome)

    async def _complete(self, delivery: Delivery, journal: Journal | None) -> None:
        """Outcome journal first, then the completion: in one transaction where the bus allows."""
        if journal is None:
            await self.bus.complete(delivery)
        elif isinstance(self.bus, JournaledCompletion):
            await self.bus.complete_journaled(delivery, journal)
        else:
            await self.pipeline.db.batched(journal)
            await self.bus.complete(delivery)

    async def _renew_locks(self) -> None:
        period = max(self.bus.lock_duration_s / 3, 0.05)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for delivery in list(self._inflight.values()):
                if now - self._locked_at.get(id(delivery), now) >= self.bus.lock_duration_s / 2:
                    try:
                        await self.bus.renew_lock(delivery)
                        self._locked_at[id(delivery)] = now
                    except LockLostError:
                        log.warning("lock lost during processing", transport_message_id=delivery.message_id)

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
