"""Retry policy: a few quick in-process attempts, then delayed redelivery, then dead-letter.

In-process attempts (tenacity) absorb blips without giving up the lock; a wait longer than
``max_inprocess_wait_s`` (a long Retry-After, say) is not slept in-process but handed to the bus
as a delayed retry. The count of delayed retries travels with the message (``cwi-attempt``): it is
read here (``attempt_of``), decided here (``after_transient``) and written by the bus adapters
from ``Retry.attempt``, nowhere else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from contracts import DeadLetterReason
from providers.errors import TransientError
from worker.buses.base import Delivery
from worker.db import Journal
from worker.messaging.outcomes import DeadLetter, Retry

T = TypeVar("T")

ATTEMPT_PROPERTY = "cwi-attempt"
BUSY_DELAY_S = 2.0
"""A record another message is working on: try again this soon, without counting an attempt."""


def attempt_of(delivery: Delivery) -> int:
    """The delayed retries this message has had (0 for a first delivery, or an unreadable count)."""
    raw = delivery.properties.get(ATTEMPT_PROPERTY, 0)
    try:
        return max(int(raw), 0)
    except (TypeError, ValueError):
        return 0


JournalFor = Callable[[str, str], Journal]
"""``journal(action, detail)``: the sync-log step of a failed attempt (``retry`` or ``failed``)."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    delays: Sequence[float] = (60.0, 300.0, 900.0)
    inprocess_attempts: int = 3
    base_wait_s: float = 0.2
    max_inprocess_wait_s: float = 5.0

    def _wait_s(self, failures: int, exc: BaseException | None) -> float:
        """Wait after the ``failures``-th failed attempt: backoff, or Retry-After if longer."""
        retry_after = exc.retry_after if isinstance(exc, TransientError) else None
        return float(max(self.base_wait_s * 2 ** (failures - 1), retry_after or 0.0))

    def _gives_up(self, failures: int, exc: BaseException | None) -> bool:
        return failures >= self.inprocess_attempts or self._wait_s(failures, exc) > self.max_inprocess_wait_s

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Call ``fn``, retrying TransientError in-process; the last TransientError propagates."""
        try:
            return await fn()  # the common case, without tenacity's bookkeeping
        except TransientError as exc:
            if self._gives_up(1, exc):
                raise
            await asyncio.sleep(self._wait_s(1, exc))

        # tenacity numbers its attempts from 1; ours are one further along.
        def outcome(state: RetryCallState) -> BaseException | None:
            return state.outcome.exception() if state.outcome is not None else None

        retrying = AsyncRetrying(
            retry=retry_if_exception_type(TransientError),
            stop=lambda state: self._gives_up(state.attempt_number + 1, outcome(state)),
            wait=lambda state: self._wait_s(state.attempt_number + 1, outcome(state)),
            reraise=True,
        )

        async def attempt() -> T:  # tenacity awaits only real coroutine functions
            return await fn()

        return await retrying(attempt)

    def next_delay(self, attempt: int, retry_after: float | None) -> float | None:
        """Delay before delayed retry number ``attempt + 1``, or None when they are used up."""
        if attempt >= len(self.delays):
            return None
        return max(self.delays[attempt], retry_after or 0.0)


def after_transient(
    policy: RetryPolicy, delivery: Delivery, exc: TransientError, journal: JournalFor
) -> Retry | DeadLetter:
    """The one retry decision: a delayed retry while the policy allows, else ``RetriesExhausted``.

    The intent journalled before the push stays open: a timeout may hide a write that reached the
    ERP, so the next attempt looks the record up before creating it.
    """
    attempt = attempt_of(delivery)
    delay = policy.next_delay(attempt, exc.retry_after)
    if delay is None:
        detail = f"RetriesExhausted after {attempt} delayed retries: {exc}"
        description = f"gave up after {attempt + 1} attempts: {exc}"
        return DeadLetter(DeadLetterReason.RetriesExhausted, description, journal("failed", detail))
    return Retry(delay, attempt + 1, str(exc), journal("retry", f"retry in {delay:g} s: {exc}"))


def busy(delivery: Delivery, what: str) -> Retry:
    """Another message holds the record: come back soon; this costs the message no attempt."""
    return Retry(BUSY_DELAY_S, attempt_of(delivery), f"{what} is being worked on by another message")
