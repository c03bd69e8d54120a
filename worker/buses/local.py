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
import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Delete, Row, Select, Update
from sqlalchemy.exc import IntegrityError

from config_db.chunks import in_chunks
from config_db.prepared import Prepared
from worker.buses.base import BusStats, DeadLetter, Delivery, LockLostError, OutgoingMessage
from worker.buses.local_sql import (
    ACTIVE,
    DEADLETTERED,
    dead_letter_locked,
    dead_letter_spent,
    delete_dead_letter,
    delete_locked,
    extend_lock,
    insert_messages,
    lock_messages,
    lock_size,
    ready_statement,
    release_lock,
    retry_in_place,
    select_dead_letter_by_id,
    select_dead_letter_session,
    select_dead_letters,
    select_existing_ids,
    select_stats,
)
from worker.db import Database, Journal

_FIRST_POLL_S = 0.02
_MAX_POLL_S = 0.25
_PUBLISH_ATTEMPTS = 3
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


@functools.cache
def _prepared(statement: Update | Delete | Select[Any]) -> Prepared:
    """A settlement's statement, or a receive's, compiled once and run through the driver."""
    return Prepared(statement)


def _properties(raw: Any) -> dict[str, Any]:
    """The properties column as the driver gives it to a prepared read: JSON text on SQLite."""
    if isinstance(raw, str | bytes):
        raw = json.loads(raw)
    return dict(raw or {})


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
        self.exclusive_sessions = True
        """A session's messages are handed out one at a time, to one receiver (across processes: the
        head's row lock): with session = client id, a record's messages never run side by side."""
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

    def publish_in(self, conn: Connection, messages: Sequence[OutgoingMessage]) -> None:
        """Publish in the caller's transaction, with its other writes (an outbox: the messages exist
        exactly when those writes do). Duplicate detection as ``publish``."""
        self._insert_new(conn, [(m, _encode_body(m.body), _scheduled_ms(m)) for m in messages])

    def _insert_new(self, conn: Connection, encoded: Sequence[tuple[OutgoingMessage, str, int]]) -> None:
        ids = list(dict.fromkeys(m.message_id for m, _, _ in encoded))
        seen: set[str] = set()
        for chunk in in_chunks(ids):
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

    def on_arrival(self, wake: Callable[[], None]) -> None:
        """Never called: what other processes publish is seen by the next receive, not before."""

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
        # When the locks end, on the clock the worker's lock keeper reads: the group commit's
        # answer may reach a busy loop a good part of a lock later, and a renewal reckoned from
        # then would come too late.
        lock_expires = time.monotonic() + self._lock_ms / 1000
        params = {"b_queue": self.queue, "b_now": now, "b_limit": max_count}
        rows = _prepared(self._select_ready(max_count)).execute(conn, params).all()
        spent = [r for r in rows if r.delivery_count >= self.max_delivery_count]
        fresh = [r for r in rows if r.delivery_count < self.max_delivery_count]
        if spent:
            conn.execute(dead_letter_spent(), [self._spent_params(r, now) for r in spent])
        if not fresh:
            return [], len(spent)
        token = str(uuid.uuid4())
        seqs = [r.seq for r in fresh]
        size = lock_size(len(seqs))
        params = {f"b_seq{i}": seqs[min(i, len(seqs) - 1)] for i in range(size)}
        _prepared(lock_messages(size)).execute(
            conn, {**params, "b_token": token, "b_until": now + self._lock_ms}
        )
        return [self._delivery(r, token, lock_expires) for r in fresh], len(spent)

    def _spent_params(self, row: Row[Any], now: int) -> dict[str, Any]:
        description = (
            f"delivered {row.delivery_count} times without being settled "
            f"(max delivery count {self.max_delivery_count})"
        )
        return {"b_seq": row.seq, "b_description": description, "b_now": now}

    @staticmethod
    def _delivery(row: Row[Any], token: str, lock_expires: float) -> Delivery:
        return Delivery(
            body=row.body.encode("utf-8"),
            message_id=row.message_id,
            delivery_count=row.delivery_count + 1,
            enqueued_at=_from_ms(row.enqueued_at),
            session_id=row.session_id,
            properties=_properties(row.properties),
            lock=(row.seq, token),
            lock_expires=lock_expires,
        )

    # --- settling -------------------------------------------------------------------------------

    async def _settle(
        self, delivery: Delivery, statement: Update | Delete, journal: Journal | None = None, **params: Any
    ) -> None:
        """Run a lock-checked statement in a group commit; no row touched means the lock is lost.

        ``journal`` is committed in the same transaction, even when the lock turns out lost: it
        records what the ERP now holds, which stays true whoever settles the message.
        """
        seq, token = _seq_token(delivery)
        prepared = _prepared(statement)

        def work(conn: Connection) -> int:
            if journal is not None:
                journal(conn)
            now = self._now_ms()
            bound = {"b_seq": seq, "b_token": token, "b_now": now, "b_until": now + self._lock_ms, **params}
            return int(prepared.execute(conn, bound).rowcount)

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

    async def open(self) -> None:
        """Nothing to connect: the bus is the worker's own database."""

    async def close(self) -> None:
        """Nothing to release: the Database belongs to whoever built it."""
