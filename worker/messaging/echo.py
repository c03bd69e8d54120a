"""Echo suppression, both directions: what we wrote must not come back as a change.

ERP → CW: an ERP change is our own write coming back (or a stale report) when its author is our
API identity (the provider discovers it), when its version is one we wrote or applied, when it is
older than the version we hold (versions compared by their real type; opaque ones only for
equality), when its content is what we wrote (for ERPs without versions), or when it reports a
record deleted in the ERP (by our push, or by a user: a delete webhook leaves a tombstone too, even
for a record CW never knew) with nothing newer than that delete: a late create or update webhook
must not bring it back. Every version, hash and tombstone is kept for a window
(``config_db.marks``), not only the last one.

CW → ERP: the CW event of our own inbound write carries exactly the fields we wrote: their
fingerprint is among the record's ``cw`` marks (consumed when seen); the order rule
(``worker.messaging.order``) catches the rest by CW's version.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from config_db import marks
from config_db.sync_log import Link
from contracts import Action, Envelope
from providers.versions import VersionKind, compare_versions
from worker.messaging.fingerprint import DELETED, fingerprint


@dataclass(frozen=True, slots=True)
class ErpState:
    """The ERP's side of a change, as reported by the webhook or fetched."""

    deleted: bool
    value: dict[str, Any] | None
    version: str | None
    author: str | None
    content_hash: str | None


@dataclass(frozen=True, slots=True)
class Written:
    """What we wrote to (or applied from) one ERP record within the window."""

    versions: frozenset[str] = frozenset()
    hashes: frozenset[str] = frozenset()
    tombstones: frozenset[str] = frozenset()
    """The record's version at each of our deletes ("" when the ERP gave none)."""

    @classmethod
    def of(cls, found: Iterable[marks.Mark]) -> Written:
        by_kind: dict[str, set[str]] = {marks.VERSION: set(), marks.HASH: set(), marks.TOMBSTONE: set()}
        for mark in found:
            by_kind.setdefault(mark.kind, set()).add(mark.value)
        return cls(
            frozenset(by_kind[marks.VERSION]),
            frozenset(by_kind[marks.HASH]),
            frozenset(by_kind[marks.TOMBSTONE]),
        )


def echo_reason(
    state: ErpState,
    link: Link | None,
    written: Written,
    identity: str | None,
    version_kind: VersionKind = "opaque",
) -> str | None:
    """Why this ERP change is an echo of our own write (or stale), or None when it is genuine."""
    if identity and state.author == identity:
        return f"author {state.author!r} is our API user"
    if link is None:
        # Never linked, but perhaps deleted in the ERP before this late report of it arrived.
        return None if state.deleted else _after_delete(state, written, version_kind)
    if state.deleted:
        return "already deleted on both sides" if link.deleted else _stale_delete(state, link, version_kind)
    if link.deleted:
        return _after_delete(state, written, version_kind)
    if state.version is not None:
        if state.version == link.version:
            return f"version {state.version} is the one we last wrote"
        if state.version in written.versions:
            return f"version {state.version} is one we wrote or applied earlier"
        order = None if link.version is None else compare_versions(version_kind, state.version, link.version)
        if order == 0:  # the same version written another way (Uni's timestamps, with and without µs)
            return f"version {state.version} is the one we last wrote"
        if order is not None and order < 0:
            return f"version {state.version} is older than {link.version}, the one we hold"
        if order is not None and order > 0:
            # Newer, but the same content as our last write: the ERP's own bookkeeping (a release,
            # a recalculation) after our write, nothing a user changed.
            same = state.content_hash is not None and state.content_hash == link.content_hash
            return "content is what we last wrote" if same else None
    if state.content_hash is not None and state.content_hash == link.content_hash:
        return "content is what we last wrote"
    if state.content_hash is not None and state.content_hash in written.hashes:
        return "content is what we wrote earlier"
    return None


def _stale_delete(state: ErpState, link: Link, version_kind: VersionKind) -> str | None:
    """A delete reported at a version older than the one we hold: the record was written again
    after it (our push re-created it where the ERP reuses keys), so it is not gone."""
    if state.version is None or link.version is None:
        return None
    order = compare_versions(version_kind, state.version, link.version)
    if order is None or order >= 0:
        return None
    return f"deleted at version {state.version}, older than {link.version}, the one we hold"


def _after_delete(state: ErpState, written: Written, version_kind: VersionKind) -> str | None:
    """A change reported for a record deleted in the ERP (by our push, or a user's delete we
    applied or noted): stale unless its version is newer than the delete's."""
    if not written.tombstones:
        return None  # the delete is older than the window: a record that is back is genuine
    for tombstone in written.tombstones:
        order = None
        if state.version is not None and tombstone:
            order = compare_versions(version_kind, state.version, tombstone)
        if order is None or order <= 0:
            return "the record was deleted; the change reported is not newer than its delete"
    return None


def reverse_echo(env: Envelope, link: Link | None, found: Iterable[tuple[int, marks.Mark]]) -> int | None:
    """The id of the ``cw`` mark this CW event echoes (our own inbound write), or None."""
    if link is None or link.cw_fingerprint is None:
        return None
    if env.action is Action.deleted:
        value = DELETED
    elif env.data is not None:
        value = fingerprint(env.data)
    else:
        return None
    for mark_id, mark in found:
        if mark.kind == marks.FINGERPRINT and mark.value == value:
            return mark_id
    return None
