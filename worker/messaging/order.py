"""Per-record order: an event older than what the ERP already holds for its record is never pushed.

A CW event's order key is its ``sequence`` (CW's row version, strictly increasing per record,
deletes included) or, when CW did not send one, its ``occurred_at``. The record link keeps the key
of the newest CW state the ERP holds: the newest event applied, or CW's version after our own
inbound write. Delayed retries, redeliveries, replays and competing workers can then deliver a
record's events in any order: an older one is journalled ``superseded`` and completed, so the ERP
never ends with a stale value, and a delete is never undone by an earlier create or update.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from config_db.sync_log import Link
from contracts import Action, Envelope


@dataclass(frozen=True, slots=True)
class OrderKey:
    sequence: int | None
    at: dt.datetime | None


def key_of(env: Envelope) -> OrderKey:
    return OrderKey(env.sequence, env.occurred_at)


def held_by(link: Link | None) -> OrderKey | None:
    if link is None or (link.cw_sequence is None and link.cw_at is None):
        return None
    return OrderKey(link.cw_sequence, link.cw_at)


def _compare(event: OrderKey, held: OrderKey) -> int | None:
    if event.sequence is not None and held.sequence is not None:
        return (event.sequence > held.sequence) - (event.sequence < held.sequence)
    if event.at is not None and held.at is not None:
        return (event.at > held.at) - (event.at < held.at)
    return None


MAX_AHEAD = dt.timedelta(days=1)
"""How far a CW event's ``occurred_at`` may be ahead of this worker's clock. A day tolerates any
clock skew or zone mislabelling; beyond, the time is wrong (a year typed 2062, 9999-12-31)."""


def too_far_ahead(env: Envelope, now: dt.datetime) -> str | None:
    """Why this CW event's time cannot be right, or None. Taken as its order key, such a time held
    every later change of the record back (each ``superseded``) until it came round."""
    if env.inbound or env.occurred_at - now <= MAX_AHEAD:
        return None
    return (
        f"occurred_at {env.occurred_at.isoformat()} is {(env.occurred_at - now).days} days ahead of "
        "this worker's clock (at most one): it would hold back every later change of its record"
    )


def superseded(env: Envelope, link: Link | None, *, attempted: bool = False) -> str | None:
    """Why this CW event must not be pushed (the ERP holds its record's newer state), or None.

    ``attempted``: this envelope was tried before. Its own failed attempt may be what set the
    link's key (a write in doubt, see ``in_doubt``): the same key then means "try it again"."""
    if link is not None and link.deleted and env.action is not Action.deleted:
        # Deleted in CW: by its own delete event, or by our write of the ERP's delete. CW does not
        # bring a record back, so a create or update of it was made before (not yet pushed).
        return "the record is deleted in CW since this change"
    held = held_by(link)
    if held is None:
        return None
    event = key_of(env)
    order = _compare(event, held)
    if order is None or order > 0 or (order == 0 and attempted):
        return None
    if event.sequence is not None and held.sequence is not None:
        if order == 0:
            return f"sequence {event.sequence} is already what the ERP holds"
        return f"sequence {event.sequence} is older than {held.sequence}, already applied"
    if order == 0:
        return None  # two events in the same instant: cannot tell, so push (idempotent)
    assert event.at is not None and held.at is not None
    return f"occurred at {event.at.isoformat()}, before {held.at.isoformat()}, already applied"


def in_doubt(env: Envelope, link: Link | None) -> Link:
    """The link once a push of this event failed in a way that may hide a write (a timeout, a 5xx
    after applying, a crash): what the ERP holds is unknown, but it may be this event's state, so
    no older event may be pushed after it. Only the order key moves; the ERP's side stays."""
    return _keyed(link, after(env, link))


def with_attempts(
    link: Link | None, attempts: Sequence[tuple[int | None, dt.datetime | None]]
) -> Link | None:
    """The link as the order rule must see it while pushes of other events of the record are in
    doubt (their worker died before journalling an outcome): the ERP may hold any of them, so its
    key is the newest of the link's and theirs. Those messages come back (they were never settled)
    and are pushed again if newer than what the ERP holds by then."""
    if not attempts:
        return link
    return _keyed(link, _newest([held_by(link), *(OrderKey(seq, at) for seq, at in attempts)]))


def after(env: Envelope, link: Link | None) -> OrderKey:
    """The key the link keeps once this event is applied: the newer of the two, field by field (a
    thin event is pushed whatever its key, since its data is read from CW when it is handled)."""
    return _newest([key_of(env), held_by(link)])


def _newest(keys: Sequence[OrderKey | None]) -> OrderKey:
    """Field by field, the newest of ``keys``."""
    sequences = [k.sequence for k in keys if k is not None and k.sequence is not None]
    times = [k.at for k in keys if k is not None and k.at is not None]
    return OrderKey(max(sequences) if sequences else None, max(times) if times else None)


def _keyed(link: Link | None, key: OrderKey) -> Link:
    """``link`` (or none yet) with only its order key changed."""
    return dataclasses.replace(link or Link(None, None, None, False), cw_sequence=key.sequence, cw_at=key.at)
