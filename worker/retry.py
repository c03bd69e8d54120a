"""Retry policy: a few quick in-process attempts, then delayed redelivery, then dead-letter.

In-process attempts (tenacity) absorb blips without giving up the lock; a wait longer than
``max_inprocess_wait_s`` (a long Retry-After, say) is not slept in-process but handed to the bus
as a delayed retry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from providers.errors import TransientError

T = TypeVar("T")

ATTEMPT_PROPERTY = "cwi-attempt"


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
