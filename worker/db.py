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
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, text
from sqlalchemy.pool import StaticPool

from config_db.database import BUSY_TIMEOUT_MS
from worker import tracing
from worker.logging import get_logger
from worker.outage import Outage, is_impatient, unreachable

log = get_logger()

T = TypeVar("T")
Work = Callable[[Connection], T]
Journal = Callable[[Connection], None]
"""Database work that journals what happened, committed by whoever settles the message."""

_MAX_BATCH = 256
CHECKPOINT_S = 0.05
"""How often the checkpointer copies SQLite's write-ahead log into the database file."""
RESTART_FRAMES = 16_000
"""Pages in the write-ahead log (64 MB) past which the checkpointer makes it start over. Each
restart holds the writer for the few pages left to copy (about 10 ms in ``cwi bench``); at 1,000
pages (SQLite's own threshold) that came every period and cost more than the zeroing it saved."""
RESTART_WAIT_MS = 200
"""How long a restart waits for readers of an older snapshot (writers wait meanwhile)."""
RESTART_BACKOFF_S = 10.0
"""After a restart that a reader held off, how long before the next try (the log grows meanwhile)."""


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

    def run_sync(self, work: Work[T]) -> T:
        with self.engine.begin() as conn:
            return work(conn)

    def _in_thread(self, work: Work[T]) -> T:
        """``work`` in a transaction of its own, on one of our threads (see ``_kept``)."""
        if self._kept is None:
            return self.run_sync(work)
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
                _closed(conn)
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
            batch, self._pending = self._pending[:_MAX_BATCH], self._pending[_MAX_BATCH:]
            try:
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
            self.outage.back()
            for (_, future, _), (ok, value) in zip(batch, results, strict=True):
                if future.done():
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

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
            _closed(conn)
        self._kept_all.clear()
        if self.checkpointer is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.checkpointer.stop)
        self.engine.dispose()


class Checkpointer:
    """SQLite's checkpoints (the write-ahead log copied into the database file, then synced) in a
    thread and connection of their own, every ``period_s``.

    SQLite's default, ``wal_autocheckpoint``, makes the commit that crosses 1,000 pages of log do
    the copy while every caller of that group commit waits: about 40 % of the commits' time in
    ``cwi bench``, and moving it here took the worker from about 780 to 890 events/s (same sitting).
    SQLite releases the GIL while it copies, so this runs beside the writer. PASSIVE never waits
    for the writer or a reader; what it could not copy is copied the next time. SQLite's own
    checkpointing is all we use; this only chooses the thread.

    A passive checkpoint never lets the log start over while the writer keeps writing (the writer
    appends before the copy catches up), so under steady load the log grew without end: 750 MB
    in eight seconds of ``cwi bench``, each new page of it zeroed by the kernel (15 % of the
    worker's CPU; the file is never shrunk, see ``config_db.database.WAL_SIZE_LIMIT``). Once the log
    holds ``restart_frames`` pages, the next transaction of the worker's writer is preceded by a
    RESTART checkpoint (``restart``), on the writer's own thread and connection, so that our own
    writes can never starve it: it copies what the passive ones left (little) and the next commit
    writes from the start of the log again. It waits at most ``RESTART_WAIT_MS`` for a reader of an
    older snapshot (another process), and after such a wait is tried again ``restart_backoff_s``
    later: a long read costs the worker's commits at most that wait every ``restart_backoff_s``.
    """

    def __init__(
        self,
        engine: Engine,
        period_s: float,
        *,
        restart_frames: int = RESTART_FRAMES,
        restart_backoff_s: float = RESTART_BACKOFF_S,
    ) -> None:
        self._engine = engine
        self._period_s = period_s
        self._restart_frames = restart_frames
        self._restart_backoff_s = restart_backoff_s
        self._restart_after = 0.0
        self._stopping = threading.Event()
        self.runs = 0
        self.restart_due = False
        """Set here when the log is long enough; ``restart`` (the writer's thread) clears it."""
        self.restarts = 0
        self.held_off = 0
        """Restarts given up because a reader held an older snapshot for ``RESTART_WAIT_MS``."""
        self._thread = threading.Thread(target=self._loop, name="cwi-checkpoint", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        conn: Any = None
        while True:
            stopping = self._stopping.wait(self._period_s)
            try:
                conn = conn or self._engine.raw_connection()
                # While a restart is due, the writer is about to copy everything itself: two
                # checkpoints at once would make its restart find ours in the way (held off).
                if stopping or not self.restart_due:
                    self._checkpoint(conn)
                    self.runs += 1
            except Exception as exc:  # noqa: BLE001 - locked or gone for now: the next period
                log.debug("checkpoint skipped", error=f"{exc.__class__.__name__}: {exc}")
                _closed(conn)
                conn = None
            if stopping:
                _closed(conn)
                return

    def _checkpoint(self, conn: Any) -> None:
        cursor = conn.cursor()
        try:
            _, frames, _ = cursor.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        finally:
            cursor.close()
        if frames >= self._restart_frames and time.monotonic() >= self._restart_after:
            self.restart_due = True

    def restart(self, conn: Connection) -> None:
        """The RESTART checkpoint, on the writer's connection between two of its transactions.
        Never fails the writer: an error counts as held off (tried again ``restart_backoff_s`` on)."""
        self.restart_due = False
        try:
            busy = _restart(conn.connection.dbapi_connection)
        except Exception as exc:  # noqa: BLE001 - the writer's transaction goes on
            log.debug("log restart skipped", error=f"{exc.__class__.__name__}: {exc}")
            busy = True
        if busy:
            self.held_off += 1
            self._restart_after = time.monotonic() + self._restart_backoff_s
        else:
            self.restarts += 1

    def stop(self) -> None:
        """Checkpoint once more (what the last commits wrote) and end the thread."""
        self._stopping.set()
        self._thread.join()


def _restart(dbapi_conn: Any) -> bool:
    """SQLite's RESTART checkpoint waiting at most ``RESTART_WAIT_MS``; True when it was held off."""
    cursor = dbapi_conn.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={RESTART_WAIT_MS}")
        try:
            busy, _, _ = cursor.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
        finally:
            cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()
    return bool(busy)


def _closed(conn: Any) -> None:
    """Close ``conn`` (if any), whatever state it is in."""
    if conn is not None:
        with contextlib.suppress(Exception):  # a broken connection is let go either way
            conn.close()


def _select_one(conn: Connection) -> None:
    conn.execute(text("SELECT 1"))


def _span_name(work: Callable[..., Any]) -> str:
    """``db <function>`` for a trace (plain ``db`` for a lambda)."""
    while isinstance(work, functools.partial):
        work = work.func
    name = getattr(work, "__name__", "")
    return f"db {name}" if name and name != "<lambda>" else "db"
