"""Retention: delete sync-log rows and record values older than a window, in batches, keeping what
is still read.

The sync log's rule (docs/architecture.md, "Retention"): a row older than the window is deleted
unless its message has not finished, that is, the row names a client and a message and the inbox has
no row for them (in flight, waiting for a retry, dead-lettered, or purged without finishing). The
worker reads the sync log only for such messages: ``message_state`` asks for the message's last
intent row (an open ``pending`` means "look the record up before creating it", any intent means
"attempted", which lets a replay of a write in doubt through the order check) only after the inbox
said "not finished"; the dead-letter replay reads the message's ``replayed`` mark and what followed
it. A finished message is recognised by its inbox row, which retention never deletes; echo
suppression reads ``echo_marks`` and ``record_links`` (their own windows), never the sync log.

Record values (``record_values``: what each write carried, for the console's life of a record and
its search by number or name) are read by nothing on the message path: an old row goes unless it is
the newest of its record, so the console still finds every record and shows its last values.

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

from sqlalchemy import (
    ColumnElement,
    Connection,
    Delete,
    Select,
    Table,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    not_,
    select,
)

from config_db.models import inbox, utcnow
from config_db.sync_log import log
from config_db.values import values

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
    """The sync-log rows deleted (or that would be, ``dry_run``) and kept; the record values' too."""

    before: dt.datetime
    deleted: int
    kept: int
    batches: int
    dry_run: bool
    values_deleted: int
    values_kept: int


def still_needed() -> ColumnElement[bool]:
    """True for a sync-log row that retention keeps whatever its age: its message is unfinished."""
    finished = exists().where(inbox.c.client_id == log.c.client_id, inbox.c.message_id == log.c.message_id)
    return and_(log.c.client_id.is_not(None), log.c.message_id.is_not(None), not_(finished))


_newer = values.alias("newer")


def superseded_values() -> ColumnElement[bool]:
    """True for record values that a newer row of the same record follows: only those may go (a
    range of ``ix_record_values_record``); the newest of each record is kept whatever its age."""
    v = values.c
    return exists().where(
        _newer.c.client_id == v.client_id,
        _newer.c.entity == v.entity,
        _newer.c.cw_id == v.cw_id,
        _newer.c.id > v.id,
    )


@dataclass(frozen=True, slots=True)
class Kind:
    """One table's walk: its next batch of ids (``span``: summed up), the delete of a batch's
    prunable rows, their count."""

    batch: Select[Any]
    delete: Delete
    count: Select[Any]

    def span(self, size: int) -> Select[Any]:
        """The next ``size`` rows after id ``after`` summed up in one row: their first and last id
        and how many are older than ``before``. The rows themselves stay on the server: fetching
        them cost the client 23 s of CPU for five million rows (a dry run on PostgreSQL, 2026-12-07)."""
        rows = self.batch.limit(size).subquery()
        old = func.coalesce(func.sum(case((rows.c.at < bindparam("before"), 1), else_=0)), 0)
        return select(func.min(rows.c.id), func.max(rows.c.id), old)


def _kind(table: Table, may_go: ColumnElement[bool]) -> Kind:
    """``table``'s walk: a row in the batch's id range goes when it is older than ``before`` and
    ``may_go`` holds for it."""
    c = table.c
    prunable = and_(c.id >= bindparam("lo"), c.id <= bindparam("hi"), c.at < bindparam("before"), may_go)
    return Kind(
        batch=select(c.id, c.at).where(c.id > bindparam("after")).order_by(c.id),
        delete=delete(table).where(prunable),
        count=select(func.count()).select_from(table).where(prunable),
    )


SYNC_LOG = _kind(log, not_(still_needed()))
RECORD_VALUES = _kind(values, superseded_values())
KINDS = (SYNC_LOG, RECORD_VALUES)  # in this order: the sync log first, as before record values existed


def prune_step(
    conn: Connection,
    *,
    before: dt.datetime,
    after: int,
    batch: int = DEFAULT_BATCH,
    dry_run: bool = False,
    kind: Kind = SYNC_LOG,
) -> Step:
    """The next batch of ``kind``'s table after id ``after``: delete (or count, ``dry_run``) its rows
    older than ``before`` that nothing needs any more."""
    lo, hi, older = conn.execute(kind.span(batch), {"after": after, "before": before}).one()
    old = int(older)
    if old == 0:
        return Step(after, 0, 0, done=True)
    params: dict[str, Any] = {"lo": lo, "hi": hi, "before": before}
    if dry_run:
        gone = int(conn.execute(kind.count, params).scalar() or 0)
    else:
        gone = conn.execute(kind.delete, params).rowcount
    return Step(hi, gone, old - gone, done=False)


Work = Callable[[Connection], Step]


@dataclass(slots=True)
class _Walk:
    """One table's walk through its batches: where the next starts, and what it has added up to."""

    kind: Kind
    after: int = 0
    deleted: int = 0
    kept: int = 0
    batches: int = 0

    def work(self, before: dt.datetime, batch: int, dry_run: bool) -> Work:
        return partial(
            prune_step, before=before, after=self.after, batch=batch, dry_run=dry_run, kind=self.kind
        )

    def took(self, step: Step) -> bool:
        """Add ``step`` up; False once the walk is done."""
        if step.done:
            return False
        self.after, self.deleted, self.kept = step.after, self.deleted + step.deleted, self.kept + step.kept
        self.batches += 1
        return True


def _pruned(before: dt.datetime, walks: list[_Walk], dry_run: bool) -> Pruned:
    sync_log, values_ = walks
    batches = sync_log.batches + values_.batches
    return Pruned(before, sync_log.deleted, sync_log.kept, batches, dry_run, values_.deleted, values_.kept)


def prune(
    run: Callable[[Work], Step],
    older_than: dt.timedelta,
    *,
    batch: int = DEFAULT_BATCH,
    dry_run: bool = False,
    now: dt.datetime | None = None,
    on_batch: Callable[[Step, float], object] | None = None,
) -> Pruned:
    """Every batch of the sync log, then of the record values, each in its own transaction (``run``
    runs one: ``Database.run_sync``)."""
    before = (now or utcnow()) - older_than
    walks = [_Walk(kind) for kind in KINDS]
    for walk in walks:
        start = time.perf_counter()
        while walk.took(step := run(walk.work(before, batch, dry_run))):
            if on_batch is not None:
                on_batch(step, time.perf_counter() - start)
            start = time.perf_counter()
    return _pruned(before, walks, dry_run)


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
    walks = [_Walk(kind) for kind in KINDS]
    for walk in walks:
        while walk.took(await run(walk.work(before, batch, False))):
            if pause is not None:
                await pause()
    return _pruned(before, walks, False)
