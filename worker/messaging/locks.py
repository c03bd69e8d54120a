"""The locks of the messages in flight, kept alive: each renewed once half of it is gone (``LockKeeper``)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time

from worker.buses.base import Bus, Delivery, LockLostError
from worker.logging import get_logger

log = get_logger()

MIN_WAIT_S = 0.05
"""The shortest wait between two rounds of renewals."""
RETRY_S = 1.0
"""After a renewal failed for another reason than a lost lock (the connection, the database), how
long before the next round (at most an eighth of a lock): the lock may still be ours, and the
failure may pass."""


class LockKeeper:
    """Renews each held message's lock when half of it is gone, so that a renewal has half a lock
    (30 s of Service Bus's default minute) to arrive in, however loaded the process.

    A lock is reckoned from the moment the message is handed out, or from when the bus says it ends
    (``Delivery.lock_expires``) if that is sooner: a message that waited in the SDK's prefetch
    buffer has less of its lock left than a fresh one, and is renewed at once if half is gone.

    Renewals were checked every third of a lock and made once half had passed, so one came as late
    as five sixths of the lock (0.33 s of the test peer's 2 s: lost on a loaded machine), and a
    renewal that failed otherwise than with a lost lock ended the renewing for the worker's life.
    """

    def __init__(self, bus: Bus) -> None:
        self._bus = bus
        self._ends: dict[int, tuple[Delivery, float]] = {}
        self._due = asyncio.Event()
        self._failing = False
        self.rounds = 0
        """Waits for the next renewal (``run``'s turns)."""

    def hold(self, delivery: Delivery) -> None:
        now = time.monotonic()
        ends = now + self._bus.lock_duration_s
        if delivery.lock_expires is not None:
            ends = min(ends, delivery.lock_expires)
        self._ends[id(delivery)] = (delivery, ends)
        if ends - now <= self._half():
            self._due.set()

    def release(self, delivery: Delivery) -> None:
        self._ends.pop(id(delivery), None)

    def _half(self) -> float:
        return self._bus.lock_duration_s / 2

    async def run(self) -> None:
        """Renew until cancelled (the runner's background task)."""
        while True:
            await self._until_due()
            now = time.monotonic()
            due = [delivery for delivery, ends in list(self._ends.values()) if ends - now <= self._half()]
            errors = [error for error in await asyncio.gather(*map(self._renew, due)) if error]
            self._tell(errors, len(due))
            if errors:
                await asyncio.sleep(max(min(RETRY_S, self._half() / 4), MIN_WAIT_S))

    def _tell(self, errors: list[str], tried: int) -> None:
        """One warning when renewals start failing and one line when they work again: a database
        or broker outage would otherwise log every held message at every retry."""
        if errors:
            if self._failing:
                log.debug("lock renewals still failing", failed=len(errors), error=errors[0])
            else:
                log.warning(
                    "lock renewals failing; retrying", failed=len(errors), tried=tried, error=errors[0]
                )
            self._failing = True
        elif tried and self._failing:
            log.info("lock renewals work again", renewed=tried)
            self._failing = False

    async def _until_due(self) -> None:
        """Until the soonest lock is half gone, or a message arrives whose lock already is. At most
        half a lock: the bus may learn that the entity's locks are shorter than it was told."""
        soonest = min((ends for _, ends in self._ends.values()), default=math.inf)
        # The floor last: a lock of a few milliseconds (CWI_LOCK_DURATION_S only has to be positive)
        # must not make this a busy loop.
        wait = max(min(soonest - self._half() - time.monotonic(), self._half()), MIN_WAIT_S)
        self.rounds += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._due.wait(), wait)
        self._due.clear()

    async def _renew(self, delivery: Delivery) -> str | None:
        """Renew ``delivery``'s lock; the error when it failed for a reason that may pass."""
        started = time.monotonic()
        try:
            await self._bus.renew_lock(delivery)
        except LockLostError:
            log.warning("lock lost during processing", transport_message_id=delivery.message_id)
            self.release(delivery)  # nothing left to renew: its settlement will say lost too
            return None
        except Exception as exc:  # noqa: BLE001 - the lock may still be ours: try again
            return f"{exc.__class__.__name__}: {exc}"
        if id(delivery) in self._ends:  # not settled meanwhile
            self._ends[id(delivery)] = (delivery, started + self._bus.lock_duration_s)
        return None
