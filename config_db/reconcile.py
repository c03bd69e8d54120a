"""Reconciliation's state: sync anchors per client and entity, the scheduler's per-client lease, and
the record links of one entity read in one query.

The lease row of a client and job stays once made (it keeps ``last_run_at``); it is held while
``holder`` is set and ``until`` (epoch ms) has not passed. Taking it is one conditional statement,
so two schedulers in two processes can never both hold a client.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import uuid
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Insert, Select, Update, and_, delete, insert, or_, select, update

from config_db.models import reconcile_anchors, reconcile_runs, record_links, utcnow
from config_db.prepared import insert_if_absent
from config_db.sync_log import Link

anchors = reconcile_anchors
runs = reconcile_runs
links = record_links


Pending = tuple[tuple[str | None, str | None], ...]
"""``(cw_id, external_id)`` of records found out of step."""


@dataclass(frozen=True, slots=True)
class Anchor:
    cw: str | None
    erp: str | None
    full_at: dt.datetime | None
    pending: Pending = ()


def get_anchor(db: Connection, client_id: str, entity: str) -> Anchor | None:
    row = db.execute(
        select(anchors.c.cw_anchor, anchors.c.erp_anchor, anchors.c.full_at, anchors.c.pending).where(
            anchors.c.client_id == client_id, anchors.c.entity == entity
        )
    ).first()
    if row is None:
        return None
    pending = tuple((p[0], p[1]) for p in row.pending or [] if isinstance(p, list) and len(p) == 2)
    return Anchor(row.cw_anchor, row.erp_anchor, row.full_at, pending)


def save_anchor(db: Connection, client_id: str, entity: str, anchor: Anchor) -> None:
    values = {
        "cw_anchor": anchor.cw,
        "erp_anchor": anchor.erp,
        "full_at": anchor.full_at,
        "pending": [list(p) for p in anchor.pending],
        "updated_at": utcnow(),
    }
    where = and_(anchors.c.client_id == client_id, anchors.c.entity == entity)
    if db.execute(update(anchors).where(where).values(**values)).rowcount == 0:
        db.execute(insert(anchors).values(client_id=client_id, entity=entity, **values))


def forget_anchors(db: Connection, client_id: str) -> None:
    db.execute(delete(anchors).where(anchors.c.client_id == client_id))


def links_of(db: Connection, client_id: str, provider: str, entity: str) -> dict[str, Link]:
    """Every record link of one client's entity, by CW id."""
    rows = db.execute(
        select(
            links.c.cw_id,
            links.c.external_id,
            links.c.version,
            links.c.content_hash,
            links.c.deleted,
            links.c.cw_sequence,
        ).where(links.c.client_id == client_id, links.c.provider == provider, links.c.entity == entity)
    )
    return {
        row.cw_id: Link(
            row.external_id, row.version, row.content_hash, bool(row.deleted), cw_sequence=row.cw_sequence
        )
        for row in rows
    }


# -- the scheduler's lease ----------------------------------------------------------------------


def holder_name() -> str:
    """Who holds a run: this host and process, and a token of this holder within it."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def s_insert_run(dialect_name: str) -> Insert:
    """The run's row, held, unless it exists (no error either way); an Insert on every dialect."""
    return cast(Insert, insert_if_absent(runs, ("client_id", "job"), dialect_name))


def s_take_run(client_id: str, job: str, holder: str, *, now_ms: int, until: int) -> Update:
    """Hold an existing run's row when it is free, ran out, or is already ``holder``'s."""
    free = or_(runs.c.holder.is_(None), runs.c.until < now_ms, runs.c.holder == holder)
    return (
        update(runs)
        .where(runs.c.client_id == client_id, runs.c.job == job, free)
        .values(holder=holder, until=until)
    )


def s_release_run(client_id: str, job: str, holder: str, values: dict[str, object]) -> Update:
    return (
        update(runs)
        .where(runs.c.client_id == client_id, runs.c.job == job, runs.c.holder == holder)
        .values(**values)
    )


def q_last_run(client_id: str, job: str) -> Select[Any]:
    return select(runs.c.last_run_at).where(runs.c.client_id == client_id, runs.c.job == job)


def acquire_run(db: Connection, client_id: str, job: str, holder: str, *, now_ms: int, lease_ms: int) -> bool:
    """Hold the client's ``job`` until ``now_ms + lease_ms`` unless another holder has it now."""
    until = now_ms + lease_ms
    row = {"client_id": client_id, "job": job, "holder": holder, "until": until, "last_run_at": None}
    row["last_outcome"] = None
    if db.execute(s_insert_run(db.dialect.name), row).rowcount == 1:
        return True
    taken = db.execute(s_take_run(client_id, job, holder, now_ms=now_ms, until=until))
    return int(taken.rowcount) == 1


def release_run(
    db: Connection, client_id: str, job: str, holder: str, *, ran_at: dt.datetime | None, outcome: str | None
) -> None:
    """Let the client go; with ``ran_at``, remember that (and how) the job ran."""
    values: dict[str, object] = {"holder": None, "until": None}
    if ran_at is not None:
        values |= {"last_run_at": ran_at, "last_outcome": outcome}
    db.execute(s_release_run(client_id, job, holder, values))


def last_run(db: Connection, client_id: str, job: str) -> dt.datetime | None:
    found: dt.datetime | None = db.execute(q_last_run(client_id, job)).scalar()
    return found
