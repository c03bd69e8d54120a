"""Reading the journal for operators: a record's entries, the operator actions, recent activity.

The console's queries (the hot path's statements stay in ``sync_log``); all read-only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select

from config_db.chunks import in_chunks
from config_db.sync_log import links, log

#: actions of the worker's own steps that end a message (for the overview's counts).
ENDINGS = frozenset(
    {
        "created",
        "updated",
        "deleted",
        "unchanged",
        "inbound",
        "failed",
        "superseded",
        "echo_ignored",
        "duplicate",
    }
)


def _rows(db: Connection, query: Any) -> list[dict[str, Any]]:
    return [dict(row._mapping) for row in db.execute(query)]


def record_links(
    db: Connection, client_id: str, entity: str, cw_id: str, providers: Collection[str] = ()
) -> list[dict[str, Any]]:
    """The record's current link in each provider it was written to. ``providers``: the kinds it
    can be (every registered one), so that the primary key (client, provider, entity, CW id) is
    sought once per kind instead of walking the client's links (42 ms for a client with 200,000)."""
    c = links.c
    fields = (c.provider, c.external_id, c.version, c.deleted, c.updated_at, c.cw_sequence, c.cw_at)
    query = select(*fields).where(c.client_id == client_id, c.entity == entity, c.cw_id == cw_id)
    if providers:
        query = query.where(c.provider.in_(sorted(providers)))
    return _rows(db, query)


def record_entries(
    db: Connection,
    client_id: str,
    entity: str,
    cw_id: str,
    external_ids: Collection[str] = (),
    message_ids: Collection[str] = (),
    limit: int = 1000,
) -> list[dict[str, Any]]:
    """Everything the journal says about one record, oldest first: rows naming its CW id or one of
    its external ids, and every row of the messages that did (operator acts included)."""
    c = log.c
    own = and_(c.entity == entity, c.cw_id == cw_id)
    if external_ids:
        own = or_(own, and_(c.entity == entity, c.external_id.in_(sorted(external_ids))))
    ids = select(c.message_id).where(c.client_id == client_id, own, c.message_id.is_not(None))
    found = set(db.execute(ids.limit(limit)).scalars()) | set(message_ids)
    where = own if not found else or_(own, c.message_id.in_(sorted(found)))
    query = select(log).where(c.client_id == client_id, where).order_by(c.id.desc()).limit(limit)
    return list(reversed(_rows(db, query)))


def find_records(db: Connection, client_id: str, text: str, limit: int = 50) -> list[dict[str, Any]]:
    """Records whose CW id or external id is ``text``: (entity, cw_id, provider, external_id)."""
    c = links.c
    query = (
        select(c.entity, c.cw_id, c.provider, c.external_id)
        .where(c.client_id == client_id, or_(c.cw_id == text, c.external_id == text))
        .limit(limit)
    )
    found = _rows(db, query)
    if not found:
        c2 = log.c
        seen = select(c2.entity, c2.cw_id, c2.provider, c2.external_id).where(
            c2.client_id == client_id, c2.entity.is_not(None), or_(c2.cw_id == text, c2.external_id == text)
        )
        rows = _rows(db, seen.order_by(c2.id.desc()).limit(limit * 4))
        unique = {(r["entity"], r["cw_id"]): r for r in reversed(rows) if r["cw_id"]}
        found = list(unique.values())[:limit]
    return found


def operator_entries(
    db: Connection, *, client_id: str | None = None, limit: int = 200
) -> list[dict[str, Any]]:
    """The audit trail: every operator action, newest first."""
    query = select(log).where(log.c.direction == "operator")
    if client_id:
        query = query.where(log.c.client_id == client_id)
    return _rows(db, query.order_by(log.c.id.desc()).limit(limit))


def activity(db: Connection, since: dt.datetime) -> list[dict[str, Any]]:
    """Per client, provider and action: how many messages ended that way since ``since``."""
    c = log.c
    query = (
        select(c.client_id, c.provider, c.action, func.count().label("n"))
        .where(c.at >= since, c.action.in_(sorted(ENDINGS | {"retry"})), c.direction != "operator")
        .group_by(c.client_id, c.provider, c.action)
    )
    return _rows(db, query)


def timings(db: Connection, since: dt.datetime, limit: int = 20_000) -> list[dict[str, Any]]:
    """The pending rows and the outcome rows since ``since`` (for the ERP's latency), and retries."""
    c = log.c
    actions = sorted({"pending", "retry", "failed", "created", "updated", "deleted", "unchanged", "inbound"})
    query = (
        select(c.client_id, c.provider, c.message_id, c.action, c.at, c.detail)
        .where(c.at >= since, c.action.in_(actions), c.direction != "operator")
        .order_by(c.id)
        .limit(limit)
    )
    return _rows(db, query)


def replayed_envelopes(db: Connection, envelope_ids: Collection[str]) -> set[str]:
    """The envelope ids an operator replayed (or edited and sent again) before."""
    found: set[str] = set()
    for chunk in in_chunks(sorted(envelope_ids)):
        query = select(log.c.message_id).where(
            log.c.direction == "operator",
            log.c.action.in_(("replayed", "edited")),
            log.c.message_id.in_(chunk),
        )
        found.update(str(x) for x in db.execute(query).scalars())
    return found
