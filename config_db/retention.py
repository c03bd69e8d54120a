"""Sync-log retention: delete rows older than a window, in batches, keeping what the worker reads.

The rule (docs/architecture.md, "Retention"): a row older than the window is deleted unless its
message has not finished, that is, the row names a client and a message and the inbox has no row for
them (in flight, waiting for a retry, dead-lettered, or purged without finishing). The worker reads
the sync log only for such messages: ``message_state`` asks for the message's last intent row (an
open ``pending`` means "look the record up before creating it", any intent means "attempted", which
lets a replay of a write in doubt through the order check) only after the inbox said "not
finished"; the dead-letter replay reads the message's ``replayed`` mark and what followed it. A
finished message is recognised by its inbox row, which retention never deletes; echo suppression
reads ``echo_marks`` and ``record_links`` (their own windows), never the sync log.

Batches: the next ``batch`` ids in order (the primary key), rows older than the window among them
deleted in one short transaction; the walk stops at the first batch with no row older than the
window (ids follow time, so the rest is newer). Each batch is its own transaction, so a worker
waits at most one batch.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, bindparam, delete, exists, func, not_, select

from config_db.inbox import inbox
from config_db.models import utcnow
from config_db.sync_log import log

DEFAULT_BATCH = 1000


@dataclass(frozen=True, slots=True)
class Step:
    """One batch: where the next starts, how many rows went (or would go), how many were kept."""

    after: int
    deleted: int
    kept: int
    done: bool


@dataclass(frozen=True, slots=True)
class Pruned:
    before: dt.datetime
    deleted: int
    kept: int
    batches: int
    dry_run: bool


def still_needed() -> ColumnElement[bool]:
    """True for a sync-log row that retention keeps whatever its age: its message is unfinished."""
    finished = exists().where(inbox.c.client_id == log.c.client_id, inbox.c.message_id == log.c.message_id)
    return and_(log.c.client_id.is_not(None), log.c.message_id.is_not(None), not_(finished))


def _prunable() -> ColumnElement[bool]:
    return and_(
        log.c.id >= bindparam("lo"),
        log.c.id <= bindparam("hi"),
        log.c.at < bindparam("before"),
        not_(still_needed()),
    )


Q_BATCH = select(log.c.id, log.c.at).where(log.c.id > bindparam("after")).order_by(log.c.id)
S_DELETE = delete(log).where(_prunable())
Q_COUNT = select(func.count()).select_from(log).where(_prunable())


def prune_step(
    conn: Connection, *, before: dt.datetime, after: int, batch: int = DEFAULT_BATCH, dry_run: bool = False
) -> Step:
    """The next batch after id ``after``: delete (or count, ``dry_run``) its rows older than ``before``
    that nothing needs any more."""
    rows = conn.execute(Q_BATCH.limit(batch), {"after": after}).all()
    old = sum(1 for row in rows if row.at < before)
    if old == 0:
        return Step(after, 0, 0, done=True)
    params: dict[str, Any] = {"lo": rows[0].id, "hi": rows[-1].id, "before": before}
    if dry_run:
        gone = int(conn.execute(Q_COUNT, params).scalar() or 0)
    else:
        gone = conn.execute(S_DELETE, params).rowcount
    return Step(rows[-1].id, gone, old - gone, done=False)


Work = Callable[[Connection], Step]


def prune(
    run: Callable[[Work], Step],
    older_than: dt.timedelta,
    *,
    batch: int = DEFAULT_BATCH,
    dry_run: bool = False,
    now: dt.datetime | None = None,
    on_batch: Callable[[Step, float], object] | None = None,
) -> Pruned:
    """Every batch, each in its own transaction (``run`` runs one: ``Database.run_sync``)."""
    before = (now or utcnow()) - older_than
    after, deleted, kept, batches = 0, 0, 0, 0
    while True:
        start = time.perf_counter()
        step = run(partial(prune_step, before=before, after=after, batch=batch, dry_run=dry_run))
        if step.done:
            return Pruned(before, deleted, kept, batches, dry_run)
        batches += 1
        if on_batch is not None:
            on_batch(step, time.perf_counter() - start)
        after, deleted, kept = step.after, deleted + step.deleted, kept + step.kept


async def prune_async(
    run: Callable[[Work], Awaitable[Step]],
    older_than: dt.timedelta,
    *,
    batch: int = DEFAULT_BATCH,
    pause: Callable[[], Awaitable[object]] | None = None,
) -> Pruned:
    """``prune`` for the worker's housekeeping: ``run`` is ``Database.run``; ``pause`` between batches
    lets the worker's own transactions through."""
    before = utcnow() - older_than
    after, deleted, kept, batches = 0, 0, 0, 0
    while True:
        step = await run(partial(prune_step, before=before, after=after, batch=batch))
        if step.done:
            return Pruned(before, deleted, kept, batches, False)
        batches += 1
        after, deleted, kept = step.after, deleted + step.deleted, kept + step.kept
        if pause is not None:
            await pause()
