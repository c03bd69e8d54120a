"""Echo suppression, both directions (architecture.md, "Echo suppression").

ERP → CW: a webhook change is our own write coming back when its version or content hash is what
we last wrote (or last applied), when its author is our API user, or when it is older than that.
CW → ERP: the CW event of a record whose link holds the fingerprint of our last inbound write,
with those very fields, is the echo of that write.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from config_db.sync_log import Link
from contracts import Action, Envelope
from worker.inbound.fingerprint import DELETED, fingerprint


@dataclass(frozen=True, slots=True)
class ErpState:
    """The ERP's side of a change, as reported by the webhook or fetched."""

    deleted: bool
    value: dict[str, Any] | None
    version: str | None
    author: str | None
    content_hash: str | None


def echo_reason(state: ErpState, link: Link | None, api_user: str | None) -> str | None:
    """Why this ERP change is an echo of our own write, or None when it is genuine."""
    if api_user and state.author == api_user:
        return f"author {state.author!r} is our API user"
    if link is None:
        return None
    if state.deleted:
        return "already deleted on both sides" if link.deleted else None
    if link.deleted:
        return None  # the record came back in the ERP: genuine
    if state.version is not None and state.version == link.version:
        return f"version {state.version} is the one we last wrote"
    if state.content_hash is not None and state.content_hash == link.content_hash:
        return "content is what we last wrote"
    if _older(state.version, link.version):
        return f"version {state.version} is older than {link.version}, the one we hold"
    return None


def _older(version: str | None, known: str | None) -> bool:
    return bool(version and known and version.isdigit() and known.isdigit() and int(version) < int(known))


def is_reverse_echo(env: Envelope, link: Link | None) -> bool:
    """True when this CW event only reports what our inbound write put into CW."""
    if link is None or link.cw_fingerprint is None:
        return False
    if env.action is Action.deleted:
        return link.cw_fingerprint == DELETED
    return env.data is not None and fingerprint(env.data) == link.cw_fingerprint
