"""The ERP calls in flight: at most ``limit``, and who goes next when one frees up.

Messages held beyond the calls in flight (``CWI_PREFETCH``) wait here with their intent journalled.
A free slot goes to the waiting message whose client has had the fewest calls so far in this
process (first come first served among equals), so that a client that has just arrived is not
queued behind clients that have been busy for a while; on a session entity the sessions accepted
last then catch up instead of finishing last (docs/performance.md, "Sessions: what bounds them").
No waiter is passed over indefinitely: one that has seen ``max_bypass`` slots go to others since it
arrived is served first. The order of a record's changes is kept before this point (sessions, the
record's lease and order key: docs/architecture.md), so this decides only who waits less.

asyncio's Semaphore serves strictly in arrival order, and the standard library has no priority
lock, hence this (a heap of waiters, the oldest one checked first).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections import Counter, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass


@dataclass(eq=False)
class _Waiter:
    future: asyncio.Future[None]
    granted_before: int  # slots granted when it arrived
    served: bool = False

    @property
    def gone(self) -> bool:
        return self.served or self.future.done()


class CallSlots:
    def __init__(self, limit: int, *, max_bypass: int | None = None) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self._free = limit
        self._max_bypass = 4 * limit if max_bypass is None else max_bypass
        self._calls: Counter[str] = Counter()
        self._by_calls: list[tuple[int, int, _Waiter]] = []  # heap: (client's calls, arrival, waiter)
        self._by_age: deque[_Waiter] = deque()
        self._arrivals = itertools.count()
        self._granted = 0

    @contextlib.asynccontextmanager
    async def slot(self, client: str) -> AsyncIterator[None]:
        """Hold one of the slots for ``client``'s call."""
        await self._acquire(client)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, client: str) -> None:
        if self._free > 0 and not self._by_age:
            self._free -= 1
        else:
            waiter = _Waiter(asyncio.get_running_loop().create_future(), self._granted)
            heapq.heappush(self._by_calls, (self._calls[client], next(self._arrivals), waiter))
            self._by_age.append(waiter)
            try:
                await waiter.future
            except asyncio.CancelledError:
                # Cancelled while waiting, its future is cancelled too (``gone``: dropped from both
                # queues lazily); given a slot just as it was cancelled, it passes the slot on.
                if waiter.served:
                    self._release()
                raise
        self._calls[client] += 1
        self._granted += 1

    def _release(self) -> None:
        waiter = self._next()
        if waiter is None:
            self._free += 1
            return
        waiter.served = True
        waiter.future.set_result(None)

    def _next(self) -> _Waiter | None:
        """The waiter to serve, dropping those served or cancelled meanwhile (a cancelled task's
        future is cancelled at once, before its ``except`` runs)."""
        while self._by_age and self._by_age[0].gone:
            self._by_age.popleft()
        if self._by_age and self._granted - self._by_age[0].granted_before >= self._max_bypass:
            return self._by_age.popleft()
        while self._by_calls:
            _, _, waiter = heapq.heappop(self._by_calls)
            if not waiter.gone:
                return waiter
        return None
