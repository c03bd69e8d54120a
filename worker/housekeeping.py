"""The worker's periodic upkeep (``cwi run``, every few minutes beside the work): forget echo marks
older than their window, and, with ``CWI_SYNCLOG_RETENTION``, delete old sync-log entries.

Both delete in small batches, each its own transaction, with a pause between sync-log batches so the
worker's own statements are never held up for more than one batch.

One worker a period does it, whatever the number of workers on the database: each takes the
database's housekeeping turn first (the scheduler's lease, ``config_db.reconcile.acquire_run``, on
the row of ``HOUSE``), and skips the period when another holds it or ran it less than a period ago.
A holder that dies frees the turn when its lease runs out.
"""

from __future__ import annotations

import asyncio
import datetime as dt

from sqlalchemy import Connection

from config_db import reconcile as runs
from config_db import retention
from config_db.models import utcnow
from worker.db import Database
from worker.logging import get_logger
from worker.messaging.journal import prune_echo_marks

log = get_logger()

PAUSE_S = 0.05
"""Between two sync-log batches: the worker's group commits go first."""

PERIOD_S = 300.0
"""How often the workers on one database keep house (one of them each time)."""

HOUSE = "*"
"""The housekeeping turn's row among the scheduler's leases (``reconcile_runs``): no client's id."""
JOB = "housekeeping"
_EARLY = 0.9
"""A period's share after which the next turn may come (the workers' clocks tick apart)."""


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


def take_turn(conn: Connection, holder: str, *, period_s: float = PERIOD_S) -> bool:
    """Hold the database's housekeeping turn, unless another worker holds it or ran it lately."""
    now = utcnow()
    # Three periods: a holder that died frees the turn then (a longer run is only done twice).
    lease_ms = int(3 * max(period_s, PERIOD_S) * 1000)
    if not runs.acquire_run(conn, HOUSE, JOB, holder, now_ms=int(now.timestamp() * 1000), lease_ms=lease_ms):
        return False
    last = runs.last_run(conn, HOUSE, JOB)
    if last is not None and (now - last).total_seconds() < period_s * _EARLY:
        runs.release_run(conn, HOUSE, JOB, holder, ran_at=None, outcome=None)
        return False
    return True


async def keep_house(
    db: Database,
    echo_window: dt.timedelta,
    synclog_retention: dt.timedelta | None,
    *,
    holder: str,
    period_s: float = PERIOD_S,
) -> bool:
    """This period's upkeep, when it is this worker's turn; False when it was not."""
    taking = asyncio.ensure_future(db.run(lambda conn: take_turn(conn, holder, period_s=period_s)))
    try:
        if not await asyncio.shield(taking):
            return False
    except asyncio.CancelledError:  # the worker stops: a turn taken meanwhile is let go, not held 15 min
        if await taking:
            await _release(db, holder, None, None)
        raise
    ran: dt.datetime | None = None  # stays None when the worker stops meanwhile: the turn is free at once
    outcome = "failed"
    try:
        marks = await prune_echo_marks(db, echo_window)
        entries = await prune_synclog(db, synclog_retention) if synclog_retention is not None else 0
        outcome = f"{marks} echo marks, {entries} sync-log entries deleted"
        ran = utcnow()
    except Exception:
        ran = utcnow()  # a failure is the period's run: the next one comes a period later
        raise
    finally:
        await _release(db, holder, ran, outcome if ran else None)
    return True


async def _release(db: Database, holder: str, ran: dt.datetime | None, outcome: str | None) -> None:
    await db.run(lambda conn: runs.release_run(conn, HOUSE, JOB, holder, ran_at=ran, outcome=outcome))
