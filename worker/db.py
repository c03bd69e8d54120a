"""Database access from the event loop: blocking SQLAlchemy work runs in worker threads.

``run`` executes one function in its own transaction. ``batched`` is a group commit: functions
queued by many coroutines at once share one transaction (one fsync), which is what lets SQLite keep
up with hundreds of messages a second. Each caller still learns its own result only after the
commit, so the write-ahead guarantees (intent before push) hold.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine

T = TypeVar("T")
Work = Callable[[Connection], T]
Journal = Callable[[Connection], None]
"""Database work that journals what happened, committed by whoever settles the message."""

_MAX_BATCH = 256


class Database:
    def __init__(self, engine: Engine, *, threads: int | None = None) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        if threads is None:
            threads = 1 if self.is_sqlite else 4
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="cwi-db")
        self._pending: list[tuple[Work[Any], asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None

    def run_sync(self, work: Work[T]) -> T:
        with self.engine.begin() as conn:
            return work(conn)

    async def run(self, work: Work[T]) -> T:
        """Run ``work`` in its own transaction off the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.run_sync, work)

    async def batched(self, work: Work[T]) -> T:
        """Run ``work`` in a transaction shared with whatever else is queued right now."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._pending.append((work, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch, self._pending = self._pending[:_MAX_BATCH], self._pending[_MAX_BATCH:]
            try:
                results = await loop.run_in_executor(self._executor, self._run_batch, batch)
            except BaseException as exc:  # noqa: BLE001 - delivered to every waiter
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), (ok, value) in zip(batch, results, strict=True):
                if future.done():
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

    def _run_batch(self, batch: list[tuple[Work[Any], asyncio.Future[Any]]]) -> list[tuple[bool, Any]]:
        try:
            with self.engine.begin() as conn:
                return [(True, work(conn)) for work, _ in batch]
        except Exception:
            if len(batch) == 1:
                raise
        # One function failed and rolled the shared transaction back: run each on its own so
        # that only the failing caller sees an error.
        results: list[tuple[bool, Any]] = []
        for work, _ in batch:
            try:
                results.append((True, self.run_sync(work)))
            except Exception as exc:  # noqa: BLE001
                results.append((False, exc))
        return results

    async def close(self) -> None:
        while self._flusher is not None and not self._flusher.done():
            await self._flusher
        self._executor.shutdown(wait=True)
        self.engine.dispose()
