"""When a failed delivery is tried again, and when it is given up.

Exponential backoff with jitter: the n-th wait is ``retry_first_s · 2^(n-1)`` capped at
``retry_max_s``, of which a random half is taken off (so that deliveries failing together do not
come back together), and never shorter than the subscriber's ``Retry-After``. A delivery is tried
until ``retry_for_s`` after its first attempt (about a day by default), the last attempt at that
moment; after it fails too the delivery is dead-lettered.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable

from worker.publisher.settings import PublisherSettings


def backoff_s(
    settings: PublisherSettings, failures: int, *, rand: Callable[[], float] = random.random
) -> float:
    """The wait after the ``failures``-th failed attempt (1, 2, …), before Retry-After."""
    full = min(settings.retry_first_s * 2.0 ** max(failures - 1, 0), settings.retry_max_s)
    return full / 2 + rand() * full / 2


def next_attempt(
    settings: PublisherSettings,
    *,
    failures: int,
    first_attempt_at: dt.datetime,
    now: dt.datetime,
    retry_after: float | None,
    rand: Callable[[], float] = random.random,
) -> dt.datetime | None:
    """When to try again, or None once the delivery has been retried for ``retry_for_s``."""
    give_up_at = first_attempt_at + dt.timedelta(seconds=settings.retry_for_s)
    if now >= give_up_at:
        return None
    wait = max(backoff_s(settings, failures, rand=rand), retry_after or 0.0)
    return min(now + dt.timedelta(seconds=wait), give_up_at)
