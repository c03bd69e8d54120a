"""SQLite's checkpoints for the worker's database file: its write-ahead log copied into the file
from a thread of its own, and made to start over under steady load (``Checkpointer``)."""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy import Connection, Engine

from config_db.database import close_quietly, lock_wait
from worker.logging import get_logger

log = get_logger()

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
                close_quietly(conn)
                conn = None
            if stopping:
                close_quietly(conn)
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
        Never fails the writer: an error counts as held off (tried again ``restart_backoff_s`` on).
        ``restart_due`` stays set until it is done, so that no passive checkpoint of ours starts
        meanwhile: this one would wait for it (its sync of the file took over ``RESTART_WAIT_MS`` on
        a loaded machine) and count as held off."""
        try:
            busy = _restart(conn.connection.dbapi_connection)
        except Exception as exc:  # noqa: BLE001 - the writer's transaction goes on
            log.debug("log restart skipped", error=f"{exc.__class__.__name__}: {exc}")
            busy = True
        finally:
            self.restart_due = False
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
    with lock_wait(dbapi_conn, RESTART_WAIT_MS):
        busy, _, _ = dbapi_conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
    return bool(busy)
