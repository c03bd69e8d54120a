"""The journal: every sync-log step of a message, both directions, and the record's lease.

``begin_*`` runs when a message starts, in one transaction: take the record's lease, read what the
journal knows (inbox, record link, echo marks), decide what needs no ERP call at all, and journal
the intent (``pending``). Everything after is a ``Journal`` returned with the outcome, which the
runner commits with the settlement: the outcome row, the record link, the echo marks, the inbox,
and the lease let go. A crash before that commit leaves the intent open (the next attempt looks
the record up before creating it) and the lease to run out (or to the redelivery of the message).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection

from config_db import inbox, leases, marks, sync_log
from config_db.leases import Lease, LeaseKey
from config_db.marks import Mark, RecordRef
from config_db.sync_log import Link
from contracts import Envelope
from providers.base import PushResult
from worker.db import Database, Journal
from worker.logging import redactor
from worker.messaging import order
from worker.messaging.echo import reverse_echo
from worker.tracing import step


def now_ms() -> int:
    return int(time.time() * 1000)


class Started(Protocol):
    @property
    def busy(self) -> bool: ...


S = TypeVar("S", bound=Started)
StartWork = Callable[[Connection, int], S]
"""``begin_*`` bound to its message: ``work(conn, lease_ms)``."""

_FIRST_PAUSE_S = 0.02
_MAX_PAUSE_S = 0.5


class Begin:
    """Runs a ``begin_*`` step in a group commit; while another message holds the record's lease,
    tries again with a growing pause for up to ``wait_s``, then gives up (None: come back later)."""

    def __init__(self, db: Database, *, lease_s: float, wait_s: float) -> None:
        self._db = db
        self._lease_ms = int(lease_s * 1000)
        self._wait_s = wait_s

    async def __call__(self, work: StartWork[S]) -> S | None:
        with step("begin"):
            return await self._begin(work)

    async def _begin(self, work: StartWork[S]) -> S | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wait_s
        pause = _FIRST_PAUSE_S
        while True:
            start = await self._db.batched(lambda conn: work(conn, self._lease_ms))
            if not start.busy:
                return start
            if loop.time() + pause > deadline:
                return None
            await asyncio.sleep(pause)
            pause = min(pause * 2, _MAX_PAUSE_S)


def lease_for(env: Envelope, provider: str, side: str, record_key: str, holder: str) -> Lease:
    key = LeaseKey(env.client_id, provider, env.entity.value, side, record_key)
    return Lease(key, holder, uuid.uuid4().hex)


def marks_of(env: Envelope, provider: str, side: str, record_key: str) -> RecordRef:
    return RecordRef(env.client_id, provider, env.entity.value, side, record_key)


def entry(env: Envelope, provider: str, direction: str, action: str, **fields: Any) -> sync_log.Entry:
    """A sync-log row; its detail (often an ERP's own error text) with every known secret masked, and
    a NUL character written as ``\\u0000`` (PostgreSQL's text cannot hold one: the row would fail)."""
    if isinstance(fields.get("detail"), str):
        fields["detail"] = redactor.scrub(fields["detail"]).replace("\x00", "\\u0000")
    return sync_log.Entry(
        direction=direction,
        action=action,
        message_id=env.id,
        client_id=env.client_id,
        provider=provider,
        entity=env.entity.value,
        **fields,
    )


def release_all(conn: Connection, held: Sequence[Lease]) -> None:
    for lease in held:
        leases.release(conn, lease)


# --- outbound (a CW change to push) ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutboundStart:
    """What the journal knew when the message started, and what it decided without the ERP."""

    busy: bool = False
    finished: str | None = None
    open_intent: bool = False
    link: Link | None = None
    skip: str | None = None  # "superseded" or "echo_ignored": complete without pushing
    detail: str | None = None
    echo_mark: int | None = None
    lease: Lease | None = field(default=None, repr=False)
    doubt: Link | None = None
    """Superseded by a push of a newer event left in doubt: the link with its key, kept so that
    the next older event sees it too (its lease is free by then)."""
    contested: bool = False
    """The lease was taken over (from an earlier delivery of this message whose lock ran out, or a
    holder that died), or this is a redelivery on a bus whose sessions stand in for the lease:
    that one may still journal after we began, so ours must not assume that the inbox and the link
    are as we read them."""
    exclusive: bool = False
    """No lease: the bus runs the record's messages one at a time (its session is the client)."""


def begin_outbound(
    conn: Connection,
    env: Envelope,
    provider: str,
    lease: Lease | None,
    *,
    lease_ms: int,
    ordered: bool,
    exclusive: bool = False,
) -> OutboundStart:
    """Lease, inbox, link, order and reverse echo, then the intent: one transaction.

    ``ordered`` is False for thin events (their data is read from CW when pushed: never stale).
    ``exclusive``: the bus runs this record's messages one at a time; ``lease`` is then None on a
    first delivery (no lease taken), and a redelivery's start is treated as contested.
    """
    if lease is None:
        if not exclusive:
            raise ValueError("a message runs under its record's lease unless the bus runs it exclusively")
        taken: str | None = leases.FREE
    else:
        taken = leases.take(conn, lease, now_ms=now_ms(), lease_ms=lease_ms)
        if taken is None:
            return OutboundStart(busy=True)
    state = sync_log.message_state(conn, env.client_id, env.id, provider, env.entity.value, env.cw_id)
    contested = taken == leases.TAKEN_OVER or (exclusive and lease is not None)
    known: dict[str, Any] = {
        "link": state.link,
        "lease": lease,
        "contested": contested,
        "exclusive": exclusive,
    }
    if state.finished is not None:
        return OutboundStart(finished=state.finished, **known)
    if state.link is not None and state.link.cw_fingerprint is not None:
        found = marks.read(conn, marks_of(env, provider, leases.CW, env.cw_id))
        echoed = reverse_echo(env, state.link, found)
        if echoed is not None:
            why = "the CW event of our own inbound write"
            return OutboundStart(skip="echo_ignored", detail=why, echo_mark=echoed, **known)
    link = state.link
    if ordered and taken == leases.TAKEN_OVER:
        # The lease ran out on its holder: its push of another event may be in doubt.
        attempts = sync_log.open_attempts(
            conn, env.client_id, provider, env.entity.value, env.cw_id, other_than=env.id
        )
        link = order.with_attempts(state.link, attempts)
    stale = order.superseded(env, link, attempted=state.attempted) if ordered else None
    if stale is not None:
        doubt = link if link != state.link else None
        return OutboundStart(skip="superseded", detail=stale, doubt=doubt, **known)
    detail = "recovering: an earlier attempt may have reached the ERP" if state.open_intent else None
    intent = entry(
        env,
        provider,
        "outbound",
        "pending",
        cw_id=env.cw_id,
        detail=detail,
        cw_sequence=env.sequence,
        cw_at=env.occurred_at,
    )
    sync_log.record(conn, intent)
    return OutboundStart(open_intent=state.open_intent, **known)


def _let_go(conn: Connection, start: OutboundStart) -> bool:
    """Release the message's lease; True when the inbox and the link are still as ``begin_outbound``
    read them (nobody else held the lease since, or the bus ran the record exclusively), so the
    plain, faster writes are safe."""
    if start.lease is None:
        return start.exclusive and not start.contested
    held = leases.release(conn, start.lease)
    return held and not start.contested


def finished_first(
    conn: Connection,
    env: Envelope,
    outcome: str,
    duplicate: Callable[[str], sync_log.Entry],
    *,
    checked: bool,
) -> bool:
    """Mark the message finished with ``outcome``, first of all its journal's writes. False when
    another delivery of it ran beside ours (our lock or lease ran out while we worked) and finished
    first: its outcome stands, ours is journalled as ``duplicate(detail)`` and writes nothing else."""
    if inbox.mark_finished(conn, env.client_id, env.id, outcome, checked=checked):
        return True
    prior = inbox.finished_outcome(conn, env.client_id, env.id)
    sync_log.record(conn, duplicate(f"already {prior}"))
    return False


def _duplicate(env: Envelope, provider: str) -> Callable[[str], sync_log.Entry]:
    return lambda detail: entry(env, provider, "outbound", "duplicate", cw_id=env.cw_id, detail=detail)


def outbound_duplicate(env: Envelope, provider: str, start: OutboundStart) -> Journal:
    def journal(conn: Connection) -> None:
        sync_log.record(conn, _duplicate(env, provider)(f"already {start.finished}"))
        release_all(conn, [start.lease] if start.lease else [])

    return journal


def outbound_skipped(env: Envelope, provider: str, start: OutboundStart) -> Journal:
    """Superseded, or the echo of our own inbound write: journalled and finished, nothing pushed."""
    assert start.skip is not None

    def journal(conn: Connection) -> None:
        action = start.skip or ""
        if not finished_first(conn, env, action, _duplicate(env, provider), checked=_let_go(conn, start)):
            return
        row = entry(env, provider, "outbound", action, cw_id=env.cw_id, detail=start.detail)
        sync_log.record(conn, row)
        if start.doubt is not None:
            sync_log.save_link(conn, env.client_id, provider, env.entity.value, env.cw_id, start.doubt)
        if start.echo_mark is not None:
            marks.consume(conn, start.echo_mark)
            _clear_flag_if_done(conn, env, provider)

    return journal


def _clear_flag_if_done(conn: Connection, env: Envelope, provider: str) -> None:
    """No fingerprint left to wait for: the hot path stops reading the record's ``cw`` marks."""
    ref = marks_of(env, provider, leases.CW, env.cw_id)
    if not any(mark.kind == marks.FINGERPRINT for _, mark in marks.read(conn, ref)):
        sync_log.clear_fingerprint(conn, env.client_id, provider, env.entity.value, env.cw_id)


def outbound_pushed(env: Envelope, provider: str, result: PushResult, start: OutboundStart) -> Journal:
    """The outcome row, the link (with the record's new order key), echo marks, inbox, lease."""

    def journal(conn: Connection) -> None:
        unchanged_since_begin = _let_go(conn, start)
        if not finished_first(
            conn, env, result.outcome, _duplicate(env, provider), checked=unchanged_since_begin
        ):
            return
        author = f"author {result.author}" if result.author else None
        sync_log.record(
            conn,
            entry(
                env,
                provider,
                "outbound",
                result.outcome,
                cw_id=env.cw_id,
                external_id=result.external_id,
                version=result.version,
                content_hash=result.content_hash,
                detail=author,
            ),
        )
        key = order.after(env, start.link)
        link = Link(
            result.external_id,
            result.version,
            result.content_hash,
            result.outcome == "deleted",
            start.link.cw_fingerprint if start.link else None,
            key.sequence,
            key.at,
        )
        exists = (start.link is not None) if unchanged_since_begin else None
        sync_log.save_link(conn, env.client_id, provider, env.entity.value, env.cw_id, link, exists=exists)
        if result.external_id is not None:
            ref = marks_of(env, provider, leases.ERP, result.external_id)
            marks.add(conn, ref, _written(result))

    return journal


def _written(result: PushResult) -> list[Mark]:
    if result.outcome == "deleted":
        return [Mark(marks.TOMBSTONE, result.version or "")]
    found = []
    if result.version is not None:
        found.append(Mark(marks.VERSION, result.version))
    if result.content_hash is not None:
        found.append(Mark(marks.HASH, result.content_hash))
    return found


def outbound_failed(
    env: Envelope,
    provider: str,
    start: OutboundStart | None,
    action: str,
    detail: str,
    *,
    in_doubt: bool = False,
) -> Journal:
    """A ``retry`` or ``failed`` row; the intent stays open, the lease goes. ``in_doubt``: the
    push may have reached the ERP (a transient failure), so the record's order key moves to this
    event (``order.in_doubt``): an older event of the record is superseded from now on."""

    def journal(conn: Connection) -> None:
        sync_log.record(conn, entry(env, provider, "outbound", action, cw_id=env.cw_id, detail=detail))
        if start is not None and start.lease is not None:
            leases.release(conn, start.lease)
        if in_doubt and start is not None:
            link = order.in_doubt(env, start.link)
            if link != start.link:
                sync_log.save_link(conn, env.client_id, provider, env.entity.value, env.cw_id, link)

    return journal


def outbound_unchanged(env: Envelope, provider: str, start: OutboundStart, detail: str) -> Journal:
    """Nothing to push (a thin event whose record CW no longer has): journalled, finished."""

    def journal(conn: Connection) -> None:
        if finished_first(conn, env, "unchanged", _duplicate(env, provider), checked=_let_go(conn, start)):
            sync_log.record(
                conn, entry(env, provider, "outbound", "unchanged", cw_id=env.cw_id, detail=detail)
            )

    return journal


async def prune_echo_marks(db: Database, window: dt.timedelta) -> int:
    """Forget what we wrote longer ago than ``window``, in small batches (the worker's own
    statements wait at most one batch); returns how many marks went."""
    total = 0
    while removed := await db.run(lambda conn: marks.prune(conn, older_than=window)):
        total += removed
    return total
