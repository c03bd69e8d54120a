"""The synchronization log (append-only history) and the record links (last state written).

The statements on the message path are built once, with bind parameters: building a SQLAlchemy
statement costs far more than running it on SQLite.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    Connection,
    Executable,
    Insert,
    Select,
    Update,
    and_,
    bindparam,
    func,
    insert,
    literal_column,
    select,
    text,
    update,
)

from config_db.chunks import in_chunks
from config_db.inbox import Q_FINISHED
from config_db.models import provider_connections, record_links, sync_log, utcnow
from config_db.prepared import Prepared, fixed, insert_if_absent

log = sync_log
links = record_links

#: sync-log actions that close a message's ``pending`` intent.
OUTCOMES = frozenset({"created", "updated", "deleted", "unchanged", "failed", "echo_ignored", "inbound"})
#: the actions that open or close an intent; ``retry`` and ``duplicate`` rows leave it as it was.
INTENT_ACTIONS = frozenset({"pending"} | OUTCOMES)


@dataclass(frozen=True, slots=True)
class Entry:
    direction: str  # outbound | inbound | operator
    action: str  # pending | created | updated | deleted | unchanged | duplicate | failed | retry | ...
    message_id: str | None = None
    client_id: str | None = None
    provider: str | None = None
    entity: str | None = None
    cw_id: str | None = None
    external_id: str | None = None
    version: str | None = None
    content_hash: str | None = None
    detail: str | None = None
    at: dt.datetime = field(default_factory=utcnow)
    cw_sequence: int | None = None  # pending rows: the order key of the event being pushed
    cw_at: dt.datetime | None = None

    def row(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class Link:
    external_id: str | None
    version: str | None
    content_hash: str | None
    deleted: bool
    cw_fingerprint: str | None = None
    """Set by an inbound write to CW: fingerprints of our CW writes wait among the echo marks."""
    cw_sequence: int | None = None
    """The order key of the newest CW state the ERP holds: CW's sequence (row version) …"""
    cw_at: dt.datetime | None = None
    """… or, for events without one, their ``occurred_at``."""


_LINK_KEY = ("client_id", "provider", "entity", "cw_id")

S_RECORD: Insert = insert(log)

Q_LAST_ACTION: Select[Any] = (
    select(log.c.action)
    .where(
        log.c.message_id == bindparam("message_id"),
        log.c.client_id == bindparam("client_id"),
        log.c.action.in_(fixed(INTENT_ACTIONS)),
    )
    .order_by(log.c.id.desc())
    .limit(1)
)

_LINK_FIELDS = ("external_id", "version", "content_hash", "deleted", "cw_fingerprint", "cw_sequence", "cw_at")

Q_LINK: Select[Any] = select(*(links.c[f] for f in _LINK_FIELDS)).where(
    *(links.c[k] == bindparam(f"k_{k}") for k in _LINK_KEY)
)

S_INSERT_LINK: Insert = insert(links)

S_UPDATE_LINK: Update = (
    update(links)
    .where(*(links.c[k] == bindparam(f"k_{k}") for k in _LINK_KEY))
    .values(**{f: bindparam(f) for f in _LINK_FIELDS}, updated_at=bindparam("updated_at"))
)


@dataclass(frozen=True, slots=True)
class MessageState:
    """What the journal knows when a message starts (one query on the hot path)."""

    finished: str | None
    open_intent: bool
    link: Link | None
    attempted: bool = False
    """This message journalled an intent before (whatever came of it)."""


def _q_message_state() -> Select[Any]:
    """One row: the two scalar reads beside the link, outer-joined to a constant row so that a
    missing link still gives a row (its columns NULL)."""
    one = select(literal_column("1").label("one")).subquery("one")
    link_key = and_(*(links.c[k] == bindparam(f"k_{k}") for k in _LINK_KEY))
    return select(
        Q_FINISHED.scalar_subquery().label("finished"),
        Q_LAST_ACTION.scalar_subquery().label("last_action"),
        *(links.c[f] for f in _LINK_FIELDS),
    ).select_from(one.outerjoin(links, link_key))


Q_MESSAGE_STATE: Select[Any] = _q_message_state()


def message_state(
    db: Connection, client_id: str, message_id: str, provider: str, entity: str, cw_id: str
) -> MessageState:
    """Inbox outcome, open intent and record link for a message, in one round trip."""
    params = {"client_id": client_id, "message_id": message_id, **_key(client_id, provider, entity, cw_id)}
    row = _MESSAGE_STATE.execute(db, params).one()
    link = None if row.deleted is None else _link(row)
    return MessageState(row.finished, row.last_action == "pending", link, row.last_action is not None)


def _link(row: Any) -> Link:
    cw_at = row.cw_at
    if isinstance(cw_at, str):  # a scalar subquery loses the column type on some dialects
        cw_at = dt.datetime.fromisoformat(cw_at)
    if cw_at is not None and cw_at.tzinfo is None:
        cw_at = cw_at.replace(tzinfo=dt.UTC)
    return Link(
        row.external_id,
        row.version,
        row.content_hash,
        bool(row.deleted),
        row.cw_fingerprint,
        row.cw_sequence,
        cw_at,
    )


def q_entries(client_id: str | None = None, message_id: str | None = None, limit: int = 100) -> Select[Any]:
    query = select(log).order_by(log.c.id.desc()).limit(limit)
    if client_id is not None:
        query = query.where(log.c.client_id == client_id)
    if message_id is not None:
        query = query.where(log.c.message_id == message_id)
    return query


_RECORD = Prepared(S_RECORD, column_keys=list(Entry.__slots__))
_INSERT_LINK = Prepared(S_INSERT_LINK, column_keys=[*_LINK_KEY, *_LINK_FIELDS, "updated_at"])
_UPDATE_LINK = Prepared(S_UPDATE_LINK)
_MESSAGE_STATE = Prepared(Q_MESSAGE_STATE)  # read once per message: see _link for its raw values


def record(db: Connection, entry: Entry) -> None:
    _RECORD.execute(db, entry.row())


def has_open_intent(db: Connection, client_id: str, message_id: str) -> bool:
    """True when this message journalled a ``pending`` intent and no outcome after it.

    That is the trace of a crash between push and settle, or of a timeout: the write may have
    reached the ERP.
    """
    action = db.execute(Q_LAST_ACTION, {"client_id": client_id, "message_id": message_id}).scalar()
    return action == "pending"


def _key(client_id: str, provider: str, entity: str, cw_id: str) -> dict[str, str]:
    return {"k_client_id": client_id, "k_provider": provider, "k_entity": entity, "k_cw_id": cw_id}


def get_link(db: Connection, client_id: str, provider: str, entity: str, cw_id: str) -> Link | None:
    row = db.execute(Q_LINK, _key(client_id, provider, entity, cw_id)).first()
    return None if row is None else _link(row)


@functools.cache
def insert_link_if_absent(dialect_name: str) -> Executable:
    """The link's insert that does nothing when the link exists (two writers of one new link)."""
    return insert_if_absent(links, _LINK_KEY, dialect_name)


def save_link(
    db: Connection,
    client_id: str,
    provider: str,
    entity: str,
    cw_id: str,
    link: Link,
    *,
    exists: bool | None = None,
) -> None:
    """Insert or update the link; ``exists`` (when the caller knows) saves a statement. Without it,
    a writer racing another for the same new link neither fails nor loses its values."""
    values: dict[str, Any] = {f: getattr(link, f) for f in _LINK_FIELDS}
    values["updated_at"] = utcnow()
    row = {"client_id": client_id, "provider": provider, "entity": entity, "cw_id": cw_id, **values}
    if exists is False:
        _INSERT_LINK.execute(db, row)
        return
    update_params = {**_key(client_id, provider, entity, cw_id), **values}
    if _UPDATE_LINK.execute(db, update_params).rowcount == 1:
        return
    if db.execute(insert_link_if_absent(db.dialect.name), row).rowcount != 1:
        # Another transaction inserted it since our update found none: ours is the later write.
        _UPDATE_LINK.execute(db, update_params)


def entries(
    db: Connection, *, client_id: str | None = None, message_id: str | None = None, limit: int = 100
) -> list[dict[str, object]]:
    """Newest first."""
    return [dict(row._mapping) for row in db.execute(q_entries(client_id, message_id, limit))]


# -- inbound: links found from the ERP's side, and the reverse echo consumed --------------------

Q_LINK_BY_EXTERNAL: Select[Any] = (
    select(links.c.cw_id, *(links.c[f] for f in _LINK_FIELDS))
    .where(
        links.c.client_id == bindparam("client_id"),
        links.c.provider == bindparam("provider"),
        links.c.entity == bindparam("entity"),
        links.c.external_id == bindparam("external_id"),
    )
    .order_by(links.c.updated_at.desc())
    .limit(1)
)

S_CLEAR_FINGERPRINT: Update = (
    update(links)
    .where(*(links.c[k] == bindparam(f"k_{k}") for k in _LINK_KEY))
    .values(cw_fingerprint=None, updated_at=bindparam("updated_at"))
)


def find_link_by_external(
    db: Connection, client_id: str, provider: str, entity: str, external_id: str
) -> tuple[str, Link] | None:
    """The CW id and link of the record the ERP knows as ``external_id`` (index ix_record_links_external)."""
    params = {"client_id": client_id, "provider": provider, "entity": entity, "external_id": external_id}
    row = db.execute(Q_LINK_BY_EXTERNAL, params).first()
    return None if row is None else (row.cw_id, _link(row))


def clear_fingerprint(db: Connection, client_id: str, provider: str, entity: str, cw_id: str) -> None:
    """The reverse echo arrived: a later CW event with the same fields is a genuine change again."""
    db.execute(S_CLEAR_FINGERPRINT, {**_key(client_id, provider, entity, cw_id), "updated_at": utcnow()})


# --- operators (dead-letter replay and purge, ``cwi status``) -----------------------------------

#: outcomes that mean the ERP (or CW) now holds what the message asked for.
SUCCESSES = frozenset({"created", "updated", "deleted", "unchanged", "inbound"})


_ATTEMPTS_READ = 50

Q_RECORD_OUTBOUND: Select[Any] = (
    select(log.c.message_id, log.c.action, log.c.cw_sequence, log.c.cw_at)
    .where(
        log.c.client_id == bindparam("client_id"),
        log.c.cw_id == bindparam("cw_id"),
        log.c.provider == bindparam("provider"),
        log.c.entity == bindparam("entity"),
        log.c.direction == "outbound",
    )
    .order_by(log.c.id.desc())
    .limit(_ATTEMPTS_READ)
)


def open_attempts(
    db: Connection, client_id: str, provider: str, entity: str, cw_id: str, *, other_than: str
) -> list[tuple[int | None, dt.datetime | None]]:
    """The order keys of pushes of this record by other messages whose outcome was never journalled
    (their worker died in flight): what the ERP holds may be theirs. Read from the record's newest
    outbound rows (``ix_sync_log_record``); only on the rare path of a lease taken from a holder
    that ran out."""
    params = {"client_id": client_id, "cw_id": cw_id, "provider": provider, "entity": entity}
    seen: set[str] = set()
    found = []
    for row in db.execute(Q_RECORD_OUTBOUND, params):
        if row.message_id in seen:
            continue
        seen.add(row.message_id)
        if row.action == "pending" and row.message_id != other_than:
            cw_at = row.cw_at
            if cw_at is not None and cw_at.tzinfo is None:
                cw_at = cw_at.replace(tzinfo=dt.UTC)
            found.append((row.cw_sequence, cw_at))
    return found


def latest_id(
    db: Connection, client_id: str | None, message_id: str, *, direction: str, action: str
) -> int | None:
    """The id of the newest entry of this message with this direction and action."""
    query = select(log.c.id).where(
        log.c.message_id == message_id, log.c.direction == direction, log.c.action == action
    )
    if client_id is not None:
        query = query.where(log.c.client_id == client_id)
    found: int | None = db.execute(query.order_by(log.c.id.desc()).limit(1)).scalar()
    return found


def worked_on_after(db: Connection, client_id: str | None, message_id: str, after_id: int) -> bool:
    """True when the worker journalled anything for this message after entry ``after_id``."""
    query = select(log.c.id).where(
        log.c.message_id == message_id, log.c.id > after_id, log.c.direction != "operator"
    )
    if client_id is not None:
        query = query.where(log.c.client_id == client_id)
    return db.execute(query.limit(1)).first() is not None


# A retry is a failure too: an ERP refusing connections shows at once, not after the policy. Literal
# (not bound) so that PostgreSQL matches the partial index ix_sync_log_failures.
_IS_FAILURE = text("action IN ('failed', 'retry')")
Q_LAST_FAILURES: Select[Any] = (
    select(log.c.client_id, log.c.provider, func.max(log.c.id).label("id"))
    .where(_IS_FAILURE, log.c.client_id.is_not(None))
    .group_by(log.c.client_id, log.c.provider)
)
Q_LAST_SUCCESS: Select[Any] = (
    select(log.c.at)
    .where(
        log.c.client_id == bindparam("client_id"),
        log.c.provider == bindparam("provider"),
        log.c.action.in_(fixed(SUCCESSES)),
    )
    .order_by(log.c.id.desc())
    .limit(1)
)


def last_outcomes(db: Connection) -> list[dict[str, object]]:
    """Per connection (and per client and provider that failed): when the last success and the last
    failure were journalled. Failures from their partial index; each last success by walking the
    client's newest rows back (``ix_sync_log_client_at``) to the first success: never the whole log."""
    c = provider_connections.c
    pairs = {(str(r.client_id), str(r.kind)) for r in db.execute(select(c.client_id, c.kind))}
    failures = {(str(r.client_id), str(r.provider or "")): r.id for r in db.execute(Q_LAST_FAILURES)}
    failed_at = {}
    for chunk in in_chunks(sorted(failures.values())):
        failed_at.update(
            {r.id: r.at for r in db.execute(select(log.c.id, log.c.at).where(log.c.id.in_(chunk)))}
        )
    out = []
    for client_id, provider in sorted(pairs | failures.keys()):
        success = db.execute(Q_LAST_SUCCESS, {"client_id": client_id, "provider": provider}).scalar()
        failure = failed_at.get(failures.get((client_id, provider), -1))
        if success is None and failure is None:
            continue
        out.append(
            {"client_id": client_id, "provider": provider, "last_success": success, "last_failure": failure}
        )
    return out
