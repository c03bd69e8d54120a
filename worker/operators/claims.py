"""Operator claims on dead letters: one row per dead-letter transport id, so two operators never
act on the same dead letter at once, and an interrupted replay can be resumed.

No table of its own (a new table means a migration): a claim is a row of the ``inbox`` table,
whose primary key (client_id, message_id) makes it unique, under a client id no real client can
have (ids are ``[A-Za-z0-9_.-]``). ``outcome`` holds the owner while the claim is open
(``c:<pid>:<host hash>``) and the result once it is done; ``finished_at`` is when it was taken.
An open claim is taken over when its lease ran out, or when its owner was a process on this host
that is no longer running (a replay killed halfway).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import socket
from dataclasses import dataclass
from enum import Enum
from typing import Any

from sqlalchemy import Connection, and_, insert, select, update

from config_db.models import inbox, utcnow

CLAIM_CLIENT = "~operators"
DONE = frozenset({"replayed", "purged", "gone"})
FAILED = "failed"  # the last attempt failed part-way: the next one resumes it at once


class Taken(Enum):
    NEW = "new"  # nobody acted on this dead letter before
    RESUMED = "resumed"  # an earlier claim was abandoned (its process died, or its lease ran out)
    BUSY = "busy"  # another operator is acting on it now
    DONE = "done"  # an earlier operation finished


@dataclass(frozen=True, slots=True)
class Claim:
    taken: Taken
    outcome: str  # the owner token while open, the result once done
    since: dt.datetime | None = None


def claim_key(transport_id: str) -> str:
    key = f"dlq:{transport_id}"
    if len(key) <= 128:
        return key
    return "dlq#" + hashlib.sha256(transport_id.encode()).hexdigest()


def _host_tag(host: str | None = None) -> str:
    return hashlib.sha256((host or socket.gethostname()).encode()).hexdigest()[:8]


def owner_token(pid: int | None = None) -> str:
    return f"c:{pid or os.getpid()}:{_host_tag()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _abandoned(token: str) -> bool:
    """The owner was a process on this host that is gone."""
    _, pid, host = [*token.split(":"), "", ""][:3]
    return host == _host_tag() and pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid))


def _where(key: str) -> Any:
    return and_(inbox.c.client_id == CLAIM_CLIENT, inbox.c.message_id == key)


def take(conn: Connection, transport_id: str, *, owner: str, lease_s: float) -> Claim:
    """Claim the dead letter in the caller's transaction. A concurrent insert of the same claim
    fails on the primary key (IntegrityError): the caller retries and then sees it as BUSY."""
    key = claim_key(transport_id)
    now = utcnow()
    row = conn.execute(select(inbox.c.outcome, inbox.c.finished_at).where(_where(key))).first()
    if row is None:
        values = {"client_id": CLAIM_CLIENT, "message_id": key, "outcome": owner, "finished_at": now}
        conn.execute(insert(inbox).values(values))
        return Claim(Taken.NEW, owner, now)
    outcome, since = str(row.outcome), row.finished_at
    if outcome in DONE:
        return Claim(Taken.DONE, outcome, since)
    stale = since is None or now - since > dt.timedelta(seconds=lease_s)
    if outcome != owner and outcome != FAILED and not stale and not _abandoned(outcome):
        return Claim(Taken.BUSY, outcome, since)
    # Compare-and-set: of two operators taking over at once, one wins.
    swapped = conn.execute(
        update(inbox)
        .where(_where(key), inbox.c.outcome == outcome, inbox.c.finished_at == since)
        .values(outcome=owner, finished_at=now)
    ).rowcount
    return Claim(Taken.RESUMED, owner, now) if swapped == 1 else Claim(Taken.BUSY, outcome, since)


def finish(conn: Connection, transport_id: str, *, owner: str, outcome: str) -> None:
    """Close the claim with its result (``replayed``, ``purged``, ``gone``) if this owner still holds it."""
    conn.execute(
        update(inbox)
        .where(_where(claim_key(transport_id)), inbox.c.outcome == owner)
        .values(outcome=outcome, finished_at=utcnow())
    )


def fail(conn: Connection, transport_id: str, *, owner: str) -> None:
    """Mark the claim failed part-way: the next attempt resumes it (and checks for a copy first)."""
    finish(conn, transport_id, owner=owner, outcome=FAILED)
