"""Record leases: one message at a time per record, across every worker process.

A bus with sessions already hands a client's messages out one at a time; a queue without sessions,
a topic, or two deliveries of one envelope (a publisher's retry, a replay beside its original) do
not. Taking the record's lease in the transaction that journals the intent, and letting it go in
the one that journals the outcome, makes "read the record's state, push, journal" one critical
section per record: a stale event can never be pushed after a newer one.

A lease row exists only while held. It is taken by an insert that ignores a conflict
(``insert_if_absent``), then, if a row was there, by a compare-and-set
that succeeds when that lease ran out or belongs to an earlier delivery of the same transport
message (whose lock we hold now, so its holder lost it).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import (
    Connection,
    Delete,
    Dialect,
    Executable,
    Insert,
    Update,
    and_,
    bindparam,
    delete,
    or_,
    update,
)

from config_db.models import record_leases
from config_db.prepared import Prepared, insert_if_absent

leases = record_leases

CW = "cw"
ERP = "erp"
_KEY = ("client_id", "provider", "entity", "side", "record_key")


@dataclass(frozen=True, slots=True)
class LeaseKey:
    client_id: str
    provider: str
    entity: str
    side: str  # cw | erp
    record_key: str

    def params(self) -> dict[str, str]:
        return {f"k_{name}": getattr(self, name) for name in _KEY}


@dataclass(frozen=True, slots=True)
class Lease:
    """A lease as its holder knows it: the key, the transport message, a token unique to this hold."""

    key: LeaseKey
    holder: str
    owner: str


def _match() -> Any:
    return and_(*(leases.c[name] == bindparam(f"k_{name}") for name in _KEY))


@functools.cache
def insert_lease(dialect_name: str) -> Executable:
    """Insert the lease unless a row for the record exists (no error either way)."""
    return insert_if_absent(leases, _KEY, dialect_name)


@functools.cache
def take_over() -> Update:
    """Take a lease that ran out, or that an earlier delivery of the same message held."""
    return (
        update(leases)
        .where(_match(), or_(leases.c.until < bindparam("b_now"), leases.c.holder == bindparam("b_holder")))
        .values(holder=bindparam("b_holder"), owner=bindparam("b_owner"), until=bindparam("b_until"))
    )


@functools.cache
def release_lease() -> Delete:
    return delete(leases).where(_match(), leases.c.owner == bindparam("b_owner"))


@functools.cache
def extend_lease() -> Update:
    return (
        update(leases)
        .where(_match(), leases.c.owner == bindparam("b_owner"))
        .values(until=bindparam("b_until"))
    )


@functools.cache
def _prepared_insert(dialect_name: str) -> Prepared:
    return Prepared(cast(Insert, insert_lease(dialect_name)))  # an Insert on every dialect


_RELEASE = Prepared(release_lease())


def statements(dialect: Dialect) -> dict[str, Executable]:
    """Every statement, for the tests that render them per dialect."""
    return {
        "insert_lease": insert_lease(dialect.name),
        "take_over": take_over(),
        "release_lease": release_lease(),
        "extend_lease": extend_lease(),
    }


FREE = "free"
TAKEN_OVER = "taken_over"


def take(conn: Connection, lease: Lease, *, now_ms: int, lease_ms: int) -> str | None:
    """Take the lease in the caller's transaction: ``FREE`` (nobody held it), ``TAKEN_OVER`` (from
    a holder that ran out, or an earlier delivery of the same message, which may still be working
    and journal after us), or None when another message holds it."""
    until = now_ms + lease_ms
    row = {name: getattr(lease.key, name) for name in _KEY}
    row.update(holder=lease.holder, owner=lease.owner, until=until)
    if _prepared_insert(conn.dialect.name).execute(conn, row).rowcount == 1:
        return FREE
    params = {**lease.key.params(), "b_holder": lease.holder, "b_owner": lease.owner, "b_until": until}
    if int(conn.execute(take_over(), {**params, "b_now": now_ms}).rowcount) == 1:
        return TAKEN_OVER
    return None


def acquire(conn: Connection, lease: Lease, *, now_ms: int, lease_ms: int) -> bool:
    """Take the lease in the caller's transaction; False when another message holds it."""
    return take(conn, lease, now_ms=now_ms, lease_ms=lease_ms) is not None


def release(conn: Connection, lease: Lease) -> bool:
    """Let the lease go; False (and nothing happens) if it ran out and someone else holds it now."""
    return int(_RELEASE.execute(conn, {**lease.key.params(), "b_owner": lease.owner}).rowcount) == 1


def extend(conn: Connection, lease: Lease, *, now_ms: int, lease_ms: int) -> bool:
    """Push the lease's end out; False when it is no longer ours."""
    params = {**lease.key.params(), "b_owner": lease.owner, "b_until": now_ms + lease_ms}
    return int(conn.execute(extend_lease(), params).rowcount) == 1
