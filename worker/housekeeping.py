"""The worker's periodic upkeep (``cwi run``, every few minutes beside the work): forget echo marks
older than their window, and, with ``CWI_SYNCLOG_RETENTION``, delete old sync-log entries.

Both delete in small batches, each its own transaction, with a pause between sync-log batches so the
worker's own statements are never held up for more than one batch.

One worker a period does it, whatever the number of workers on the database: each takes the
database's housekeeping turn first (the scheduler's lease, ``config_db.reconcile.acquire_run``, on
the row of ``HOUSE``), and skips the period when another holds it or ran it less than a period ago.
A holder that dies frees the turn when its lease runs out; a living one renews it each period while
it prunes, so a long prune (a first retention over a big sync log) is never started again beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import Awaitable, Callable

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
    db: Database,
    older_than: dt.timedelta,
    *,
    batch: int = retention.DEFAULT_BATCH,
    between: Callable[[], Awaitable[object]] | None = None,
) -> int:
    """Delete the sync-log entries and record values older than ``older_than`` that nothing needs;
    how many sync-log entries went. ``between`` runs in each pause between two batches."""

    async def pause() -> None:
        await asyncio.sleep(PAUSE_S)
        if between is not None:
            await between()

    done = await retention.prune_async(db.run, older_than, batch=batch, pause=pause)
    if done.deleted or done.values_deleted:
        log.info(
            "sync log pruned",
            deleted=done.deleted,
            kept=done.kept,
            values_deleted=done.values_deleted,
            before=done.before.isoformat(),
        )
    return done.deleted


class TurnLost(RuntimeError):
    """The turn's lease ran out while this worker kept house (stalled past it): another may hold it."""


def _lease(conn: Connection, holder: str, now: dt.datetime, period_s: float) -> bool:
    """The turn's lease for ``holder`` from ``now``, for three periods: a holder that died frees the
    turn then; a living one renews it each period."""
    lease_ms = int(3 * max(period_s, PERIOD_S) * 1000)
    now_ms = int(now.timestamp() * 1000)
    return runs.acquire_run(conn, HOUSE, JOB, holder, now_ms=now_ms, lease_ms=lease_ms)


def take_turn(conn: Connection, holder: str, *, period_s: float = PERIOD_S) -> bool:
    """Hold the database's housekeeping turn, unless another worker holds it or ran it lately."""
    now = utcnow()
    if not _lease(conn, holder, now, period_s):
        return False
    last = runs.last_run(conn, HOUSE, JOB)
    if last is not None and (now - last).total_seconds() < period_s * _EARLY:
        runs.release_run(conn, HOUSE, JOB, holder, ran_at=None, outcome=None)
        return False
    return True


def renew_turn(conn: Connection, holder: str, *, period_s: float = PERIOD_S) -> bool:
    """Extend ``holder``'s lease on the turn (a long prune outlasting it would be done twice);
    False when it had run out and another worker took it."""
    return _lease(conn, holder, utcnow(), period_s)


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
        # Best effort: a failure here (the database refusing) must not take the stop's place.
        with contextlib.suppress(Exception):
            if await taking:
                await _release(db, holder, None, None)
        raise
    ran: dt.datetime | None = None  # stays None when the worker stops meanwhile: the turn is free at once
    outcome = "failed"
    try:
        marks = await prune_echo_marks(db, echo_window)
        entries = 0
        if synclog_retention is not None:
            entries = await prune_synclog(db, synclog_retention, between=_renewer(db, holder, period_s))
        outcome = f"{marks} echo marks, {entries} sync-log entries deleted"
        ran = utcnow()
    except Exception:
        ran = utcnow()  # a failure is the period's run: the next one comes a period later
        raise
    finally:
        await _release(db, holder, ran, outcome if ran else None)
    return True


def _renewer(db: Database, holder: str, period_s: float) -> Callable[[], Awaitable[None]]:
    """Between two batches of a prune: renew the turn once a period has passed since the last time;
    TurnLost when it ran out and another worker took it."""
    renewed = time.monotonic()

    async def renew() -> None:
        nonlocal renewed
        if time.monotonic() - renewed < period_s:
            return
        renewed = time.monotonic()
        if not await db.run(lambda conn: renew_turn(conn, holder, period_s=period_s)):
            raise TurnLost("the housekeeping turn ran out while pruning: another worker goes on")

    return renew


async def _release(db: Database, holder: str, ran: dt.datetime | None, outcome: str | None) -> None:
    await db.run(lambda conn: runs.release_run(conn, HOUSE, JOB, holder, ran_at=ran, outcome=outcome))
