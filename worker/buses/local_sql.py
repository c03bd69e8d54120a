"""The local bus's SQL: every statement it runs, built once with bind parameters (building the
receive query costs milliseconds, far more than running it), each from a module-level builder so
that its SQL Server and PostgreSQL renderings can be checked in unit tests.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import (
    CTE,
    BindParameter,
    ColumnElement,
    Delete,
    Exists,
    FromClause,
    Insert,
    ScalarSelect,
    Select,
    Update,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    union_all,
    update,
)

from config_db.models import bus_messages
from contracts.reasons import DeadLetterReason

BUS = bus_messages
ACTIVE = "active"
DEADLETTERED = "deadlettered"


# --- statements ---------------------------------------------------------------------------------
# Built once (cached) with named parameters: building the receive query costs milliseconds, far
# more than running it. Parameter names start with ``b_`` (SQLAlchemy reserves column names).


def _unlocked(table: FromClause) -> ColumnElement[bool]:
    return or_(table.c.locked_until.is_(None), table.c.locked_until < bindparam("b_now"))


def _session_locked() -> Exists:
    """Some message of the outer row's session holds a lock (only active messages hold locks).

    Usually the holder is an earlier message, which already blocks the outer row; this catches a
    later one: an earlier message that became visible after it was locked (a scheduled publish,
    or concurrent publishers committing out of order). An index on (queue, session_id,
    locked_until) makes this a seek; without one, it walks the session's messages.
    """
    holder = BUS.alias("holder")
    return exists().where(
        holder.c.queue == BUS.c.queue,
        holder.c.session_id == BUS.c.session_id,
        holder.c.locked_until >= bindparam("b_now"),
    )


def _lockable(candidates: Sequence[ColumnElement[bool]], limit: int | BindParameter[int]) -> Select[Any]:
    """The receive SELECT: the first ``limit`` rows meeting ``candidates`` in seq order, row-locked.

    The deliverability tests are repeated although the candidates already met them: PostgreSQL
    re-checks these outer conditions on a row changed since the snapshot, which is what stops a
    row that a competitor locked or dead-lettered meanwhile from being handed out twice.
    """
    return (
        select(
            BUS.c.seq,
            BUS.c.message_id,
            BUS.c.session_id,
            BUS.c.body,
            BUS.c.properties,
            BUS.c.enqueued_at,
            BUS.c.delivery_count,
        )
        .where(
            *candidates,
            BUS.c.state == ACTIVE,
            BUS.c.visible_at <= bindparam("b_now"),
            _unlocked(BUS),
            ~_session_locked(),
        )
        .order_by(BUS.c.seq)
        .limit(limit)
        .with_for_update(skip_locked=True)
        # SQLAlchemy renders nothing for FOR UPDATE on SQL Server; this hint is its equivalent.
        # It names only the outer table: the session subqueries must still see locked rows.
        .with_hint(BUS, "WITH (UPDLOCK, ROWLOCK, READPAST)", dialect_name="mssql")
    )


def _session_ids() -> CTE:
    """Distinct session ids by a loose index scan: each step seeks the next one in ix_bus_session."""

    def first_after(after: ColumnElement[Any] | None) -> ScalarSelect[Any]:
        step = BUS.alias("next_session")
        later = step.c.session_id.is_not(None) if after is None else step.c.session_id > after
        return (
            select(step.c.session_id)
            .where(step.c.queue == bindparam("b_queue"), later)
            .order_by(step.c.session_id)
            .limit(1)
            .scalar_subquery()
        )

    sessions = select(first_after(None).label("id")).cte("sessions", recursive=True)
    return sessions.union_all(select(first_after(sessions.c.id)).where(sessions.c.id.is_not(None)))


@functools.cache
def select_ready() -> Select[Any]:
    """Deliverable messages (SQLite, PostgreSQL): each session's head, and messages without a session;
    at most ``b_limit`` (a parameter: one statement, prepared once, whatever a receive asks for).

    Walking the sessions rather than the messages makes a receive cost O(sessions), not
    O(backlog): a long queue behind a busy session is never read. A session's head is its first
    active message that is visible or was delivered before (a message waiting for its delayed
    retry keeps its place: the session's later messages wait for it); only the head can be
    deliverable, and only once it is visible. A message published for later (``scheduled_at``)
    joins its session only when it becomes visible, as on Service Bus.
    """
    sessions = _session_ids()
    head = BUS.alias("head")
    head_seq = (
        select(head.c.seq)
        .where(
            head.c.queue == bindparam("b_queue"),
            head.c.session_id == sessions.c.id,
            head.c.state == ACTIVE,
            or_(head.c.visible_at <= bindparam("b_now"), head.c.delivery_count > 0),
        )
        .order_by(head.c.seq)
        .limit(1)
        .scalar_subquery()
    )
    loose = BUS.alias("loose")
    sessionless = (
        select(loose.c.seq)
        .where(
            loose.c.queue == bindparam("b_queue"),
            loose.c.session_id.is_(None),
            loose.c.state == ACTIVE,
            # "+ 0" keeps SQLite off ix_bus_ready (a range on visible_at, then a sort of the whole
            # backlog): walking ix_bus_session in seq order stops after ``b_limit`` rows.
            loose.c.visible_at + 0 <= bindparam("b_now"),
            _unlocked(loose),
        )
        .order_by(loose.c.seq)
        .limit(bindparam("b_limit"))
        .subquery("sessionless")
    )
    candidates = union_all(select(head_seq).where(sessions.c.id.is_not(None)), select(sessionless.c.seq))
    # No queue test out here: with one, SQLite would scan ix_bus_ready instead of looking up seqs.
    return _lockable([BUS.c.seq.in_(candidates)], bindparam("b_limit"))


@functools.lru_cache(maxsize=128)
def select_ready_filtered(limit: int) -> Select[Any]:
    """The same rows for SQL Server, whose recursive CTEs allow no subqueries: test every message.

    O(backlog) per receive. A test checks that it returns exactly what ``select_ready`` does.
    ``limit`` is rendered (``TOP n``): with a parameter SQLAlchemy would wrap the query in a
    ROW_NUMBER() subquery, and the lock hints with it.
    """
    earlier = BUS.alias("earlier")
    earlier_pending = exists().where(
        earlier.c.queue == BUS.c.queue,
        earlier.c.session_id == BUS.c.session_id,
        earlier.c.state == ACTIVE,
        earlier.c.seq < BUS.c.seq,
        or_(earlier.c.visible_at <= bindparam("b_now"), earlier.c.delivery_count > 0),
    )
    return _lockable([BUS.c.queue == bindparam("b_queue"), ~earlier_pending], limit)


def ready_statement(dialect_name: str) -> Callable[[int], Select[Any]]:
    """The receive query for ``limit`` messages (run with ``b_limit`` among its parameters)."""
    if dialect_name == "mssql":
        return select_ready_filtered
    return lambda _limit: select_ready()


def lock_size(count: int) -> int:
    """The ``lock_messages`` statement for ``count`` messages: the next power of two (the caller
    repeats its last id to fill it), so that a process holds a handful of them, not one per count."""
    return 1 << max(0, count - 1).bit_length()


@functools.cache
def lock_messages(count: int) -> Update:
    """Lock ``count`` messages, ``b_seq0`` to ``b_seq{count-1}``: a parameter each, so that the
    statement is prepared once per size (an expanding ``IN`` is rendered anew at every execution).
    ``count`` is a ``lock_size``."""
    return (
        update(BUS)
        .where(BUS.c.seq.in_([bindparam(f"b_seq{i}") for i in range(count)]))
        .values(
            lock_token=bindparam("b_token"),
            locked_until=bindparam("b_until"),
            delivery_count=BUS.c.delivery_count + 1,
        )
    )


@functools.cache
def dead_letter_spent() -> Update:
    """Executed many: one ``b_seq``, ``b_description`` per message past its max delivery count."""
    return (
        update(BUS)
        .where(BUS.c.seq == bindparam("b_seq"))
        .values(
            state=DEADLETTERED,
            dead_letter_reason=DeadLetterReason.MaxDeliveryCountExceeded.value,
            dead_letter_description=bindparam("b_description"),
            dead_lettered_at=bindparam("b_now"),
            locked_until=None,
            lock_token=None,
        )
    )


def _lock_held() -> ColumnElement[bool]:
    """The settling caller still holds its lock: ``b_seq``, ``b_token``, ``b_now``."""
    return and_(
        BUS.c.seq == bindparam("b_seq"),
        BUS.c.state == ACTIVE,
        BUS.c.lock_token == bindparam("b_token"),
        BUS.c.locked_until >= bindparam("b_now"),
    )


@functools.cache
def delete_locked() -> Delete:
    return delete(BUS).where(_lock_held())


@functools.cache
def release_lock() -> Update:
    return update(BUS).where(_lock_held()).values(locked_until=None, lock_token=None)


@functools.cache
def retry_in_place() -> Update:
    """A delayed retry keeps the row (and so its place in its session): lock released, visible
    again at ``b_visible``, the retry count in its properties."""
    return (
        update(BUS)
        .where(_lock_held())
        .values(
            locked_until=None,
            lock_token=None,
            visible_at=bindparam("b_visible"),
            properties=bindparam("b_properties", type_=BUS.c.properties.type),
        )
    )


@functools.cache
def extend_lock() -> Update:
    return update(BUS).where(_lock_held()).values(locked_until=bindparam("b_until"))


@functools.cache
def dead_letter_locked() -> Update:
    return (
        update(BUS)
        .where(_lock_held())
        .values(
            state=DEADLETTERED,
            dead_letter_reason=bindparam("b_reason"),
            dead_letter_description=bindparam("b_description"),
            dead_lettered_at=bindparam("b_now"),
            locked_until=None,
            lock_token=None,
        )
    )


@functools.cache
def insert_messages() -> Insert:
    """Executed with full rows (``LocalBus._row``)."""
    return insert(BUS)


@functools.cache
def select_existing_ids() -> Select[Any]:
    return select(BUS.c.message_id).where(BUS.c.message_id.in_(bindparam("b_ids", expanding=True)))


@functools.cache
def select_stats() -> Select[Any]:
    """(bucket, reason, count) rows; the bucket is computed in a subquery so GROUP BY is portable."""
    bucket = case(
        (BUS.c.state == DEADLETTERED, DEADLETTERED),
        (BUS.c.visible_at > bindparam("b_now"), "scheduled"),
        (BUS.c.locked_until >= bindparam("b_now"), "locked"),
        else_=ACTIVE,
    )
    rows = (
        select(bucket.label("bucket"), BUS.c.dead_letter_reason.label("reason"))
        .where(BUS.c.queue == bindparam("b_queue"))
        .subquery()
    )
    return select(rows.c.bucket, rows.c.reason, func.count()).group_by(rows.c.bucket, rows.c.reason)


def select_dead_letters(limit: int) -> Select[Any]:
    return (
        select(BUS)
        .where(BUS.c.queue == bindparam("b_queue"), BUS.c.state == DEADLETTERED)
        .order_by(BUS.c.seq)
        .limit(limit)
    )


def _dead_letter_at() -> ColumnElement[bool]:
    return and_(
        BUS.c.queue == bindparam("b_queue"), BUS.c.seq == bindparam("b_seq"), BUS.c.state == DEADLETTERED
    )


@functools.cache
def select_dead_letter_session() -> Select[Any]:
    return select(BUS.c.session_id).where(_dead_letter_at())


@functools.cache
def delete_dead_letter() -> Delete:
    return delete(BUS).where(_dead_letter_at())


@functools.cache
def select_dead_letter_by_id() -> Select[Any]:
    return select(BUS).where(
        BUS.c.queue == bindparam("b_queue"),
        BUS.c.message_id == bindparam("b_id"),
        BUS.c.state == DEADLETTERED,
    )


STATEMENTS: Mapping[str, Callable[[], Any]] = {
    "select_ready": select_ready,
    "select_ready_filtered": lambda: select_ready_filtered(10),
    "lock_messages": lambda: lock_messages(4),
    "dead_letter_spent": dead_letter_spent,
    "delete_locked": delete_locked,
    "release_lock": release_lock,
    "retry_in_place": retry_in_place,
    "extend_lock": extend_lock,
    "dead_letter_locked": dead_letter_locked,
    "insert_messages": insert_messages,
    "select_existing_ids": select_existing_ids,
    "select_stats": select_stats,
    "select_dead_letters": lambda: select_dead_letters(10),
    "select_dead_letter_session": select_dead_letter_session,
    "delete_dead_letter": delete_dead_letter,
    "select_dead_letter_by_id": select_dead_letter_by_id,
}
"""Every statement the bus runs (for the tests that render them for SQL Server and PostgreSQL)."""
