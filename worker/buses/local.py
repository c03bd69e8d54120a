"""The local bus: a SQL table (``bus_messages``) with Azure Service Bus semantics.

Peek-lock with expiry, delivery count and max delivery count, scheduled visibility, sessions
(one message of a session at a time, in ``seq`` order), dead-letter with reason, duplicate
detection on the transport message id. SQLite serves one process (BEGIN IMMEDIATE serialises
receivers); PostgreSQL and SQL Server serve competing processes through row locks that other
receivers skip (FOR UPDATE SKIP LOCKED / READPAST).

A lock is ``(seq, lock_token)``: one fresh token per receive call, so a stale holder (whose lock
expired and was taken again) can never settle the message. Every statement comes from a
module-level builder so that the SQL Server and PostgreSQL renderings can be checked in unit tests.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import (
    CTE,
    ColumnElement,
    Connection,
    Delete,
    Exists,
    FromClause,
    Insert,
    Row,
    ScalarSelect,
    Select,
    Table,
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
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql import Executable

from config_db.models import BusMessage
from contracts.reasons import DeadLetterReason
from worker.buses.base import BusStats, DeadLetter, Delivery, LockLostError, OutgoingMessage
from worker.db import Database, Journal

BUS = cast(Table, BusMessage.__table__)
ACTIVE = "active"
DEADLETTERED = "deadlettered"

_FIRST_POLL_S = 0.02
_MAX_POLL_S = 0.25
_IN_CHUNK = 500  # ids per IN (...) list: far below every dialect's bind parameter limit
_PUBLISH_ATTEMPTS = 3

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


def _lockable(candidates: Sequence[ColumnElement[bool]], limit: int) -> Select[Any]:
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


@functools.lru_cache(maxsize=128)
def select_ready(limit: int) -> Select[Any]:
    """Deliverable messages (SQLite, PostgreSQL): each session's head, and messages without a session.

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
            # backlog): walking ix_bus_session in seq order stops after ``limit`` rows.
            loose.c.visible_at + 0 <= bindparam("b_now"),
            _unlocked(loose),
        )
        .order_by(loose.c.seq)
        .limit(limit)
        .subquery("sessionless")
    )
    candidates = union_all(select(head_seq).where(sessions.c.id.is_not(None)), select(sessionless.c.seq))
    # No queue test out here: with one, SQLite would scan ix_bus_ready instead of looking up seqs.
    return _lockable([BUS.c.seq.in_(candidates)], limit)


@functools.lru_cache(maxsize=128)
def select_ready_filtered(limit: int) -> Select[Any]:
    """The same rows for SQL Server, whose recursive CTEs allow no subqueries: test every message.

    O(backlog) per receive. A test checks that it returns exactly what ``select_ready`` does.
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
    return select_ready_filtered if dialect_name == "mssql" else select_ready


@functools.cache
def lock_messages() -> Update:
    return (
        update(BUS)
        .where(BUS.c.seq.in_(bindparam("b_seqs", expanding=True)))
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
    "select_ready": lambda: select_ready(10),
    "select_ready_filtered": lambda: select_ready_filtered(10),
    "lock_messages": lock_messages,
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


# --- conversions --------------------------------------------------------------------------------


def _encode_body(body: bytes) -> str:
    """Bodies are UTF-8 text (JSON envelopes); the column is text so operators can read it in SQL."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError("the local bus carries UTF-8 bodies only") from exc
    if "\x00" in text:
        raise ValueError("the local bus cannot store NUL characters (PostgreSQL text forbids them)")
    return text


def _from_ms(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def _scheduled_ms(message: OutgoingMessage) -> int:
    """When the message becomes visible (0: at once), checked before any database work."""
    if message.scheduled_at is None:
        return 0
    if message.scheduled_at.tzinfo is None:
        raise ValueError("naive datetime given as a schedule time")
    return int(message.scheduled_at.timestamp() * 1000)


def _dead_letter(r: Row[Any]) -> DeadLetter:
    return DeadLetter(
        message_id=r.message_id,
        body=r.body.encode("utf-8"),
        session_id=r.session_id,
        properties=r.properties or {},
        reason=r.dead_letter_reason or "",
        description=r.dead_letter_description or "",
        delivery_count=r.delivery_count,
        enqueued_at=_from_ms(r.enqueued_at),
        dead_lettered_at=None if r.dead_lettered_at is None else _from_ms(r.dead_lettered_at),
        sequence_number=r.seq,
    )


def _seq_token(delivery: Delivery) -> tuple[int, str]:
    seq, token = delivery.lock
    return int(seq), str(token)


class LocalBus:
    """The Bus protocol over the ``bus_messages`` table. The Database belongs to the caller."""

    def __init__(
        self,
        db: Database,
        *,
        queue: str = "cwi",
        lock_duration_s: float = 60,
        max_delivery_count: int = 10,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.lock_duration_s = lock_duration_s
        self.idle_probe_s = 0.0  # a local receive sees every ready message at once
        self.journals = True  # settlements commit the message's journal in their own transaction
        self.queue = queue
        self.max_delivery_count = max_delivery_count
        self._db = db
        self._clock = clock
        self._select_ready = ready_statement(db.engine.dialect.name)

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    @property
    def _lock_ms(self) -> int:
        return int(self.lock_duration_s * 1000)  # read each time: callers may change the duration

    def _row(
        self,
        body: str,
        message_id: str,
        session_id: str | None,
        properties: Mapping[str, Any],
        visible_at: int,
        now: int,
    ) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "message_id": message_id,
            "session_id": session_id,
            "body": body,
            "properties": dict(properties),
            "state": ACTIVE,
            "enqueued_at": now,
            "visible_at": visible_at,
            "locked_until": None,
            "lock_token": None,
            "delivery_count": 0,
        }

    # --- publishing -----------------------------------------------------------------------------

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        """Insert messages; a transport message id already in the table is dropped (duplicate detection).

        A completed message is deleted, so its id may be published again later: like Service Bus's
        detection window, this protects against a publisher's retry, not against every replay.
        """
        if not messages:
            return
        encoded = [(m, _encode_body(m.body), _scheduled_ms(m)) for m in messages]
        for attempt in range(_PUBLISH_ATTEMPTS):
            try:
                await self._db.batched(lambda conn: self._insert_new(conn, encoded))
                return
            except IntegrityError:
                # A concurrent publisher inserted one of these ids first: look again and skip it.
                if attempt == _PUBLISH_ATTEMPTS - 1:
                    raise

    def _insert_new(self, conn: Connection, encoded: Sequence[tuple[OutgoingMessage, str, int]]) -> None:
        ids = list(dict.fromkeys(m.message_id for m, _, _ in encoded))
        seen: set[str] = set()
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            seen.update(conn.execute(select_existing_ids(), {"b_ids": chunk}).scalars())
        now = self._now_ms()
        rows = []
        for message, body, scheduled_ms in encoded:
            if message.message_id in seen:
                continue
            seen.add(message.message_id)
            visible_at = max(now, scheduled_ms)
            rows.append(
                self._row(body, message.message_id, message.session_id, message.properties, visible_at, now)
            )
        if rows:
            conn.execute(insert_messages(), rows)

    # --- receiving ------------------------------------------------------------------------------

    async def receive(self, max_count: int, wait_s: float) -> list[Delivery]:
        """Up to ``max_count`` locked deliveries, polling with a growing backoff for up to ``wait_s``."""
        if max_count <= 0:
            return []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(wait_s, 0.0)
        pause = _FIRST_POLL_S
        while True:
            deliveries, spent = await self._db.batched(lambda conn: self._lock_batch(conn, max_count))
            if deliveries:
                return deliveries
            if spent:
                continue  # dead-lettering a session's head may have made its next message deliverable
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            await asyncio.sleep(min(pause, remaining))
            pause = min(pause * 2, _MAX_POLL_S)

    def _lock_batch(self, conn: Connection, max_count: int) -> tuple[list[Delivery], int]:
        now = self._now_ms()
        params = {"b_queue": self.queue, "b_now": now}
        rows = conn.execute(self._select_ready(max_count), params).all()
        spent = [r for r in rows if r.delivery_count >= self.max_delivery_count]
        fresh = [r for r in rows if r.delivery_count < self.max_delivery_count]
        if spent:
            conn.execute(dead_letter_spent(), [self._spent_params(r, now) for r in spent])
        if not fresh:
            return [], len(spent)
        token = str(uuid.uuid4())
        seqs = [r.seq for r in fresh]
        conn.execute(lock_messages(), {"b_seqs": seqs, "b_token": token, "b_until": now + self._lock_ms})
        return [self._delivery(r, token) for r in fresh], len(spent)

    def _spent_params(self, row: Row[Any], now: int) -> dict[str, Any]:
        description = (
            f"delivered {row.delivery_count} times without being settled "
            f"(max delivery count {self.max_delivery_count})"
        )
        return {"b_seq": row.seq, "b_description": description, "b_now": now}

    @staticmethod
    def _delivery(row: Row[Any], token: str) -> Delivery:
        return Delivery(
            body=row.body.encode("utf-8"),
            message_id=row.message_id,
            delivery_count=row.delivery_count + 1,
            enqueued_at=_from_ms(row.enqueued_at),
            session_id=row.session_id,
            properties=row.properties or {},
            lock=(row.seq, token),
        )

    # --- settling -------------------------------------------------------------------------------

    async def _settle(
        self, delivery: Delivery, statement: Executable, journal: Journal | None = None, **params: Any
    ) -> None:
        """Run a lock-checked statement in a group commit; no row touched means the lock is lost.

        ``journal`` is committed in the same transaction, even when the lock turns out lost: it
        records what the ERP now holds, which stays true whoever settles the message.
        """
        seq, token = _seq_token(delivery)

        def work(conn: Connection) -> int:
            if journal is not None:
                journal(conn)
            now = self._now_ms()
            bound = {"b_seq": seq, "b_token": token, "b_now": now, "b_until": now + self._lock_ms, **params}
            return int(conn.execute(statement, bound).rowcount)

        if await self._db.batched(work) != 1:
            raise LockLostError(f"lock on message {delivery.message_id} expired or was taken over")

    async def complete(self, delivery: Delivery, journal: Journal | None = None) -> None:
        await self._settle(delivery, delete_locked(), journal)

    async def abandon(self, delivery: Delivery, journal: Journal | None = None) -> None:
        await self._settle(delivery, release_lock(), journal)

    async def renew_lock(self, delivery: Delivery) -> None:
        await self._settle(delivery, extend_lock())

    async def dead_letter(
        self, delivery: Delivery, reason: str, description: str, journal: Journal | None = None
    ) -> None:
        await self._settle(
            delivery, dead_letter_locked(), journal, b_reason=reason[:64], b_description=description
        )

    async def reschedule(
        self,
        delivery: Delivery,
        delay_s: float,
        properties: Mapping[str, Any],
        journal: Journal | None = None,
    ) -> None:
        """The message itself waits for its retry: same row, same place in its session, visible
        again after ``delay_s``. Its delivery count keeps growing, as with an abandon on Service Bus."""
        visible = self._now_ms() + int(max(delay_s, 0.0) * 1000)
        await self._settle(
            delivery, retry_in_place(), journal, b_visible=visible, b_properties=dict(properties)
        )

    # --- operators ------------------------------------------------------------------------------

    async def stats(self) -> BusStats:
        params = {"b_queue": self.queue, "b_now": self._now_ms()}
        rows = await self._db.run(lambda conn: conn.execute(select_stats(), params).all())
        counts = {ACTIVE: 0, "scheduled": 0, "locked": 0, DEADLETTERED: 0}
        by_reason: dict[str, int] = {}
        for bucket, reason, count in rows:
            counts[bucket] += count
            if bucket == DEADLETTERED:
                by_reason[reason or ""] = by_reason.get(reason or "", 0) + count
        return BusStats(
            active=counts[ACTIVE],
            scheduled=counts["scheduled"],
            locked=counts["locked"],
            dead_lettered=counts[DEADLETTERED],
            dead_lettered_by_reason=by_reason,
        )

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        params = {"b_queue": self.queue}
        rows = await self._db.run(lambda conn: conn.execute(select_dead_letters(limit), params).all())
        return [_dead_letter(r) for r in rows]

    async def find_dead_letter(self, message_id: str) -> DeadLetter | None:
        params = {"b_queue": self.queue, "b_id": message_id}
        row = await self._db.run(lambda conn: conn.execute(select_dead_letter_by_id(), params).first())
        return None if row is None else _dead_letter(row)

    async def holds_message(self, message_id: str, session_id: str | None) -> bool | None:
        def work(conn: Connection) -> bool:
            return conn.execute(select_existing_ids(), {"b_ids": [message_id]}).first() is not None

        return await self._db.run(work)

    async def resend_dead_letter(
        self,
        sequence_number: int,
        body: bytes,
        properties: Mapping[str, Any],
        *,
        message_id: str | None = None,
        sent: Callable[[], None] | None = None,
    ) -> bool:
        """Atomically replace a dead letter by a new active message; False if it is already gone.

        A copy with ``message_id`` already on the bus (an earlier, interrupted resend) is not
        inserted again: only the dead letter goes.
        """
        text = _encode_body(body)
        new_id = message_id or str(uuid.uuid4())
        params = {"b_queue": self.queue, "b_seq": sequence_number}

        def work(conn: Connection) -> bool:
            found = conn.execute(select_dead_letter_session(), params).first()
            if found is None or conn.execute(delete_dead_letter(), params).rowcount != 1:
                return False
            if conn.execute(select_existing_ids(), {"b_ids": [new_id]}).first() is None:
                now = self._now_ms()
                row = self._row(text, new_id, found.session_id, properties, now, now)
                conn.execute(insert_messages(), [row])
            if sent is not None:
                sent()  # before the commit: whatever happens now, the transaction applies whole or not at all
            return True

        return await self._db.run(work)

    async def purge_dead_letter(self, sequence_number: int) -> bool:
        params = {"b_queue": self.queue, "b_seq": sequence_number}

        def work(conn: Connection) -> bool:
            return int(conn.execute(delete_dead_letter(), params).rowcount) == 1

        return await self._db.run(work)

    async def close(self) -> None:
        """Nothing to release: the Database belongs to whoever built it."""
