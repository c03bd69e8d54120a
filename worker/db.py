"""Database access from the event loop: blocking SQLAlchemy work runs in worker threads.

``run`` executes one function in its own transaction. ``batched`` is a group commit: functions
queued by many coroutines at once share one transaction (one fsync), which is what lets SQLite keep
up with hundreds of messages a second. Each caller still learns its own result only after the
commit, so the write-ahead guarantees (intent before push) hold.

When the database stops answering (``worker.outage``), work waits for it and runs again, so every
function given here must be safe to run twice: a commit that failed with the connection may have
applied (inserts that must not double ignore a conflict; history rows may repeat).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DataError
from sqlalchemy.pool import StaticPool

from config_db.database import close_quietly, lock_wait
from worker import tracing
from worker.checkpoints import RESTART_FRAMES, Checkpointer
from worker.logging import get_logger
from worker.outage import Outage, is_impatient, unreachable

log = get_logger()

T = TypeVar("T")
Work = Callable[[Connection], T]
Journal = Callable[[Connection], None]
"""Database work that journals what happened, committed by whoever settles the message."""

MAX_BATCH = 256
"""Work items of one group commit at most."""
Pending = tuple[Work[Any], asyncio.Future[Any], bool]
"""Queued work, its caller's future, and whether the caller can wait out an outage."""


class Database:
    def __init__(
        self,
        engine: Engine,
        *,
        threads: int | None = None,
        outage_exit_s: float | None = None,
        checkpoint_s: float | None = None,
        restart_frames: int = RESTART_FRAMES,
    ) -> None:
        """``checkpoint_s``: run a ``Checkpointer`` that often (an SQLite engine made with
        ``autocheckpoint=False``, whose commits then never checkpoint), the log restarted past
        ``restart_frames`` pages."""
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        if threads is None:
            threads = 1 if self.is_sqlite else 4
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="cwi-db")
        self._pending: list[Pending] = []
        self._flusher: asyncio.Task[None] | None = None
        self.outage = Outage(self.ping, exit_after_s=outage_exit_s)
        self.checkpointer: Checkpointer | None = None
        if checkpoint_s is not None:
            self.checkpointer = Checkpointer(engine, checkpoint_s, restart_frames=restart_frames)
        # On an SQLite file each of our threads keeps its connection between transactions: taking
        # one from the pool and giving it back costs about 30 µs a transaction (49 against 16 µs
        # for an empty one), more than a small group commit's own work. Elsewhere (a server's
        # pool is shared with pre-ping and recycling; SQLite in memory is one static connection)
        # every transaction takes its connection from the pool.
        self._kept: threading.local | None = None
        if self.is_sqlite and not isinstance(engine.pool, StaticPool):
            self._kept = threading.local()
        self._kept_all: list[Connection] = []
        self._lends = self.checkpointer is not None and self._kept is not None and threads == 1
        """The worker's one SQLite writer thread lends its connection to the loop (``_run_inline``)."""
        self._using = threading.Lock()
        """Held while a kept connection is in use: by its thread, or by the loop borrowing it."""

    def run_sync(self, work: Work[T]) -> T:
        with self.engine.begin() as conn:
            return work(conn)

    def _in_thread(self, work: Work[T]) -> T:
        """``work`` in a transaction of its own, on one of our threads (see ``_kept``)."""
        if self._kept is None:
            return self.run_sync(work)
        with self._using:
            conn: Connection | None = getattr(self._kept, "conn", None)
            if conn is None or conn.closed:
                conn = self._kept.conn = self.engine.connect()
                self._kept_all.append(conn)
            if self.checkpointer is not None and self.checkpointer.restart_due:
                self.checkpointer.restart(conn)
            try:
                with conn.begin():
                    return work(conn)
            except BaseException:
                if conn.invalidated:  # the next transaction connects afresh
                    self._kept.conn = None
                    self._kept_all.remove(conn)
                    close_quietly(conn)
                raise

    async def ping(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._in_thread, _select_one)

    async def run(self, work: Work[T]) -> T:
        """Run ``work`` in its own transaction off the event loop; through an outage, once it is over."""
        with tracing.step(_span_name(work), **{"db.system": self.engine.dialect.name}):
            return await self._run(work)

    async def _run(self, work: Work[T]) -> T:
        loop = asyncio.get_running_loop()
        while True:
            try:
                result = await loop.run_in_executor(self._executor, self._in_thread, work)
            except Exception as exc:
                if not unreachable(exc):
                    raise
                if is_impatient():
                    self.outage.went_down(exc)
                    raise self.outage.fail_fast() from None
                await self.outage.wait(exc)
                continue
            self.outage.back()
            return result

    async def batched(self, work: Work[T]) -> T:
        """Run ``work`` in a transaction shared with whatever else is queued right now."""
        with tracing.step(
            _span_name(work), **{"db.system": self.engine.dialect.name, "cwi.db.batched": True}
        ):
            return await self._batched(work)

    async def _batched(self, work: Work[T]) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._pending.append((work, future, not is_impatient()))
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            try:
                results = self._run_inline(batch)
                if results is None:
                    results = await loop.run_in_executor(self._executor, self._run_batch, batch)
            except BaseException as exc:  # noqa: BLE001 - delivered to every waiter
                if isinstance(exc, Exception) and unreachable(exc):
                    batch = await self._outlast(batch, exc)
                    self._pending[:0] = batch  # run again first, once the database answers
                    continue
                for _, future, _ in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            # Run on their own after one of the batch failed, some may have met the database gone:
            # those wait out the outage and run again, like a batch that met it.
            lost: list[Pending] = []
            cause: Exception | None = None
            for item, (ok, value) in zip(batch, results, strict=True):
                future = item[1]
                if future.done():
                    continue
                if ok:
                    future.set_result(value)
                elif isinstance(value, Exception) and unreachable(value):
                    lost.append(item)
                    cause = value
                else:
                    future.set_exception(value)
            if cause is None:
                self.outage.back()
            else:
                self._pending[:0] = await self._outlast(lost, cause)

    async def _outlast(self, batch: list[Pending], exc: Exception) -> list[Pending]:
        """Fail the callers that cannot wait; wait for the database for the others (which are
        returned to run again). If the outage outlasts CWI_OUTAGE_EXIT_S, everyone gets the error."""
        self.outage.went_down(exc)
        patient = []
        for item in batch:
            if item[2]:
                patient.append(item)
            elif not item[1].done():
                item[1].set_exception(self.outage.fail_fast())
        if not patient:
            return []
        try:
            await self.outage.wait(exc)
        except Exception as gave_up:  # noqa: BLE001 - delivered to every waiter
            for _, future, _ in patient + self._pending:
                if not future.done():
                    future.set_exception(gave_up)
            self._pending.clear()
            return []
        return patient

    def _run_inline(self, batch: list[Pending]) -> list[tuple[bool, Any]] | None:
        """A group commit of the worker on the event loop's thread, on the writer's own SQLite
        connection when that is idle and SQLite's write lock is free this instant; None otherwise
        (the writer thread then runs it, waiting for the lock).

        Handing a batch to the thread cost more than the batch, whatever its size: the thread and
        the event loop pass the GIL to each other at every statement, so the thread's statements
        wait for a busy loop. With 256 messages in flight its batches of about 130 items took 31
        ms (0.23 ms an item, against 0.1 here) and each message waited for two of them
        (docs/performance.md). A batch here holds the loop for its milliseconds (up to about 25
        for the largest), never for a lock (``busy_timeout`` 0 meanwhile). Anything unusual (the
        lock taken, a function failing, the connection broken, a restart of the log due) leaves the
        batch to the thread, which runs it again from the start: every function given here is safe
        to run twice."""
        if (
            not self._lends
            or len(self._kept_all) != 1
            or (self.checkpointer is not None and self.checkpointer.restart_due)
            or not self._using.acquire(blocking=False)
        ):
            return None
        conn: Connection | None = None
        try:
            conn = self._kept_all[0]  # replaced only under the lock we now hold; gone: IndexError
            if conn.closed or conn.invalidated:
                return None
            with lock_wait(conn.connection.dbapi_connection, 0), conn.begin():
                return [(True, work(conn)) for work, _, _ in batch]
        except Exception:  # noqa: BLE001 - the thread runs it again and reports what fails
            with contextlib.suppress(Exception):
                if conn is not None and conn.in_transaction():
                    conn.rollback()
            return None
        finally:
            self._using.release()

    def _run_batch(self, batch: list[Pending]) -> list[tuple[bool, Any]]:
        try:
            return self._in_thread(lambda conn: [(True, work(conn)) for work, _, _ in batch])
        except Exception as exc:
            if len(batch) == 1 or unreachable(exc):
                raise
        # One function failed and rolled the shared transaction back: run each on its own so
        # that only the failing caller sees an error.
        results: list[tuple[bool, Any]] = []
        for work, _, _ in batch:
            try:
                results.append((True, self._in_thread(work)))
            except Exception as exc:  # noqa: BLE001
                results.append((False, exc))
        return results

    async def close(self) -> None:
        while self._flusher is not None and not self._flusher.done():
            await self._flusher
        self._executor.shutdown(wait=True)
        for conn in self._kept_all:
            close_quietly(conn)
        self._kept_all.clear()
        if self.checkpointer is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.checkpointer.stop)
        self.engine.dispose()


def _select_one(conn: Connection) -> None:
    conn.execute(text("SELECT 1"))


def _span_name(work: Callable[..., Any]) -> str:
    """``db <function>`` for a trace (plain ``db`` for a lambda)."""
    while isinstance(work, functools.partial):
        work = work.func
    name = getattr(work, "__name__", "")
    return f"db {name}" if name and name != "<lambda>" else "db"


def refused_value(exc: DataError) -> str:
    """One line for a value the database refused to store or compare (PostgreSQL: a NUL character
    in text, a number out of its column's range), without the statement or its parameters."""
    first = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"the database refused a value of the request: {first[0] if first else exc.__class__.__name__}"
