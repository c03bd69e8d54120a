"""The journal of the inbound path (an ERP change to apply to CW): ``begin_inbound`` takes the
record's leases on both sides, reads inbox, link and echo marks and journals the intent in one
transaction; the ``inbound_*`` journals are committed with the settlement (see
``worker/messaging/journal.py``, which holds what both directions share)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection

from config_db import inbox, leases, marks, sync_log
from config_db.leases import Lease
from config_db.marks import Mark
from config_db.sync_log import Link
from contracts import Envelope
from providers.base import CWReference
from providers.errors import DependencyMissing
from worker.db import Journal
from worker.messaging.echo import Written
from worker.messaging.journal import entry, finished_first, lease_for, marks_of, now_ms, release_all


@dataclass(frozen=True, slots=True)
class InboundStart:
    busy: bool = False
    finished: str | None = None
    cw_id: str | None = None
    link: Link | None = None
    written: Written = field(default_factory=Written)
    held: tuple[Lease, ...] = ()


@dataclass(frozen=True, slots=True)
class InboundResult:
    """``inbound`` (CW written), ``echo_ignored`` or ``unchanged``; with what to remember."""

    action: str
    cw_id: str | None
    detail: str | None = None
    link: Link | None = None
    applied: tuple[Mark, ...] = ()
    """ERP-side marks: the version and content we applied (their repeats are echoes)."""
    cw_mark: str | None = None
    """The fingerprint of the CW fields we wrote (its CW event is our echo)."""
    written: dict[str, Any] | None = None
    """The CW fields we wrote (for the webhooks publisher)."""


def resolve(
    conn: Connection, env: Envelope, provider: str, references: Sequence[CWReference]
) -> dict[str, str]:
    """CW's ids of the records an ERP record refers to (a project's customer), through the links.

    A parent not linked yet is on its way (its own webhook, or CW's event of it): wait for it.
    """
    resolved: dict[str, str] = {}
    for ref in references:
        found = sync_log.find_link_by_external(
            conn, env.client_id, provider, ref.entity.value, ref.external_id
        )
        if found is None or found[1].deleted:
            raise DependencyMissing(f"the {ref.entity.value} {ref.external_id!r} it refers to", "CW")
        resolved[ref.field] = found[0]
    return resolved


def locate(env: Envelope, provider: str, conn: Connection) -> tuple[str | None, Link | None]:
    """The CW record this ERP change is about: by the CW id the ERP named, else by its external id."""
    assert env.external is not None
    entity = env.entity.value
    if env.record_id is not None:
        link = sync_log.get_link(conn, env.client_id, provider, entity, env.record_id)
        if link is not None:
            return env.record_id, link
    found = sync_log.find_link_by_external(conn, env.client_id, provider, entity, env.external.external_id)
    if found is not None:
        return found
    return env.record_id, None


def begin_inbound(
    conn: Connection, env: Envelope, provider: str, holder: str, *, lease_ms: int
) -> InboundStart:
    """Both leases (the ERP record's, then the linked CW record's), inbox, link, marks, intent."""
    external = env.external
    assert external is not None
    now = now_ms()
    first = lease_for(env, provider, leases.ERP, external.external_id, holder)
    if not leases.acquire(conn, first, now_ms=now, lease_ms=lease_ms):
        return InboundStart(busy=True)
    held = [first]
    cw_id, link = locate(env, provider, conn)
    if cw_id is not None:
        second = lease_for(env, provider, leases.CW, cw_id, holder)
        if not leases.acquire(conn, second, now_ms=now, lease_ms=lease_ms):
            leases.release(conn, first)
            return InboundStart(busy=True)
        held.append(second)
    finished = inbox.finished_outcome(conn, env.client_id, env.id)
    if finished is not None:
        return InboundStart(finished=finished, cw_id=cw_id, link=link, held=tuple(held))
    # Read even without a link: a user's delete in the ERP leaves a tombstone for a record CW never knew.
    written = Written.of(
        m for _, m in marks.read(conn, marks_of(env, provider, leases.ERP, external.external_id))
    )
    row = entry(env, provider, "inbound", "pending", cw_id=cw_id, external_id=external.external_id)
    sync_log.record(conn, row)
    return InboundStart(cw_id=cw_id, link=link, written=written, held=tuple(held))


def _inbound_entry(
    env: Envelope, provider: str, action: str, cw_id: str | None, **fields: Any
) -> sync_log.Entry:
    assert env.external is not None
    link: Link | None = fields.pop("link", None)
    return entry(
        env,
        provider,
        "inbound",
        action,
        cw_id=cw_id,
        external_id=(link.external_id if link else None) or env.external.external_id,
        version=link.version if link else None,
        content_hash=link.content_hash if link else None,
        **fields,
    )


def inbound_duplicate(env: Envelope, provider: str, start: InboundStart) -> Journal:
    def journal(conn: Connection) -> None:
        detail = f"already {start.finished}"
        sync_log.record(conn, _inbound_entry(env, provider, "duplicate", start.cw_id, detail=detail))
        release_all(conn, start.held)

    return journal


def inbound_finished(env: Envelope, provider: str, start: InboundStart, result: InboundResult) -> Journal:
    """Outcome row, the link both ways (CW id ↔ external id), echo marks on both sides, inbox."""
    external = env.external
    assert external is not None

    def duplicate(detail: str) -> sync_log.Entry:
        return _inbound_entry(env, provider, "duplicate", result.cw_id, detail=detail)

    def journal(conn: Connection) -> None:
        release_all(conn, start.held)
        if not finished_first(conn, env, result.action, duplicate, checked=False):
            return
        link = result.link
        row = _inbound_entry(env, provider, result.action, result.cw_id, link=link, detail=result.detail)
        sync_log.record(conn, row)
        if link is not None and result.cw_id is not None:
            sync_log.save_link(conn, env.client_id, provider, env.entity.value, result.cw_id, link)
            if result.cw_mark is not None:
                ref = marks_of(env, provider, leases.CW, result.cw_id)
                marks.add(conn, ref, [Mark(marks.FINGERPRINT, result.cw_mark)])
        if result.applied:
            marks.add(conn, marks_of(env, provider, leases.ERP, external.external_id), result.applied)

    return journal


def inbound_failed(env: Envelope, provider: str, start: InboundStart, action: str, detail: str) -> Journal:
    def journal(conn: Connection) -> None:
        sync_log.record(conn, _inbound_entry(env, provider, action, start.cw_id, detail=detail))
        release_all(conn, start.held)

    return journal
