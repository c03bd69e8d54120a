"""Per-token token buckets: a vendor retry storm on one URL cannot starve the others."""

from __future__ import annotations

import time
from collections.abc import Callable


class RateLimiter:
    """``rate_per_s`` calls a second per key on average, ``burst`` at once. In memory, per process."""

    def __init__(self, rate_per_s: float, burst: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate_per_s = rate_per_s
        self.burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def take(self, key: str) -> float:
        """Spend one call for ``key``: 0 if allowed, else the seconds until the next call may pass."""
        now = self._clock()
        tokens, at = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate_per_s)
        if tokens >= 1:
            self._buckets[key] = (tokens - 1, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1 - tokens) / self.rate_per_s
