"""The worker's periodic upkeep (``cwi run``, every few minutes beside the work): forget echo marks
older than their window, and, with ``CWI_SYNCLOG_RETENTION``, delete old sync-log entries.

Both delete in small batches, each its own transaction, with a pause between sync-log batches so the
worker's own statements are never held up for more than one batch.
"""

from __future__ import annotations

import asyncio
import datetime as dt

from config_db import retention
from worker.db import Database
from worker.logging import get_logger
from worker.messaging.journal import prune_echo_marks

log = get_logger()

PAUSE_S = 0.05
"""Between two sync-log batches: the worker's group commits go first."""


async def prune_synclog(
    db: Database, older_than: dt.timedelta, *, batch: int = retention.DEFAULT_BATCH
) -> int:
    """Delete the sync-log entries and record values older than ``older_than`` that nothing needs;
    how many sync-log entries went."""
    done = await retention.prune_async(db.run, older_than, batch=batch, pause=lambda: asyncio.sleep(PAUSE_S))
    if done.deleted or done.values_deleted:
        log.info(
            "sync log pruned",
            deleted=done.deleted,
            kept=done.kept,
            values_deleted=done.values_deleted,
            before=done.before.isoformat(),
        )
    return done.deleted


async def keep_house(db: Database, echo_window: dt.timedelta, synclog_retention: dt.timedelta | None) -> None:
    await prune_echo_marks(db, echo_window)
    if synclog_retention is not None:
        await prune_synclog(db, synclog_retention)
