"""Which subscriptions want an event: every subscription read at once, kept for a few seconds.

A handled message asks here on the hot path; with no subscriptions that costs one dictionary
lookup. A subscription added (or removed) is seen within ``CWI_PUBLISHER_DIRECTORY_S``; a paused
one still gets its deliveries (they wait, kept, until it is resumed).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from config_db import subscriptions
from worker.db import Database
from worker.publisher.events import matches


@dataclass(frozen=True, slots=True)
class Target:
    id: str
    events: Sequence[str]
    fields: Sequence[str]


class Directory:
    def __init__(self, db: Database, *, ttl_s: float) -> None:
        self._db = db
        self._ttl_s = ttl_s
        self._by_client: dict[str, list[Target]] = {}
        self._read_at: float | None = None
        self._lock = asyncio.Lock()

    async def _current(self) -> dict[str, list[Target]]:
        if self._read_at is not None and time.monotonic() - self._read_at < self._ttl_s:
            return self._by_client
        async with self._lock:
            if self._read_at is None or time.monotonic() - self._read_at >= self._ttl_s:
                found = await self._db.run(subscriptions.listed)
                by_client: dict[str, list[Target]] = {}
                for sub in found:
                    target = Target(sub.id, tuple(sub.events), tuple(sub.fields))
                    by_client.setdefault(sub.client_id, []).append(target)
                self._by_client, self._read_at = by_client, time.monotonic()
        return self._by_client

    async def matching(self, client_id: str, event_type: str) -> list[Target]:
        targets = (await self._current()).get(client_id, [])
        return [t for t in targets if matches(t.events, event_type)]
