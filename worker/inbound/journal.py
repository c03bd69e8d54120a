"""The inbound path's database steps: each runs in one transaction (``Database.batched``)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection

from config_db import inbox, sync_log
from contracts import Envelope


@dataclass(frozen=True, slots=True)
class InboundStart:
    """What the journal knows when a webhook event starts."""

    finished: str | None
    cw_id: str | None
    link: sync_log.Link | None


@dataclass(frozen=True, slots=True)
class InboundResult:
    """The outcome of one inbound change: ``inbound`` (CW written), ``echo_ignored`` or ``unchanged``."""

    action: str
    cw_id: str | None
    detail: str | None = None
    link: sync_log.Link | None = None
    """The link to save (inbound writes only)."""


def _entry(
    env: Envelope,
    provider: str,
    action: str,
    cw_id: str | None,
    *,
    link: sync_log.Link | None = None,
    detail: str | None = None,
) -> sync_log.Entry:
    assert env.external is not None
    return sync_log.Entry(
        direction="inbound",
        action=action,
        message_id=env.id,
        client_id=env.client_id,
        provider=provider,
        entity=env.entity.value,
        cw_id=cw_id,
        external_id=(link.external_id if link else None) or env.external.external_id,
        version=link.version if link else None,
        content_hash=link.content_hash if link else None,
        detail=detail,
    )


def locate(env: Envelope, provider: str, db: Connection) -> tuple[str | None, sync_log.Link | None]:
    """The CW record this ERP change is about: by the CW id the ERP named, else by its external id."""
    assert env.external is not None
    entity = env.entity.value
    if env.record_id is not None:
        link = sync_log.get_link(db, env.client_id, provider, entity, env.record_id)
        if link is not None:
            return env.record_id, link
    found = sync_log.find_link_by_external(db, env.client_id, provider, entity, env.external.external_id)
    if found is not None:
        return found
    return env.record_id, None


def begin(env: Envelope, provider: str, db: Connection) -> InboundStart:
    """Inbox check, the record's link, and the intent journal."""
    finished = inbox.finished_outcome(db, env.client_id, env.id)
    cw_id, link = locate(env, provider, db)
    if finished is not None:
        sync_log.record(db, _entry(env, provider, "duplicate", cw_id, detail=f"already {finished}"))
    else:
        sync_log.record(db, _entry(env, provider, "pending", cw_id))
    return InboundStart(finished, cw_id, link)


def finish(env: Envelope, provider: str, result: InboundResult, db: Connection) -> None:
    """Outcome journal, the link both ways (CW id ↔ external id), and the inbox."""
    link = result.link
    sync_log.record(db, _entry(env, provider, result.action, result.cw_id, link=link, detail=result.detail))
    if link is not None and result.cw_id is not None:
        sync_log.save_link(db, env.client_id, provider, env.entity.value, result.cw_id, link)
    inbox.mark_finished(db, env.client_id, env.id, result.action)


def fail(env: Envelope, provider: str, cw_id: str | None, action: str, detail: str, db: Connection) -> None:
    sync_log.record(db, _entry(env, provider, action, cw_id, detail=detail))


def reverse_echo(env: Envelope, provider: str, db: Connection) -> None:
    """A CW event that only reports our own inbound write: journalled, its fingerprint consumed."""
    sync_log.record(
        db,
        sync_log.Entry(
            direction="outbound",
            action="echo_ignored",
            message_id=env.id,
            client_id=env.client_id,
            provider=provider,
            entity=env.entity.value,
            cw_id=env.cw_id,
            detail="the CW event of our own inbound write",
        ),
    )
    sync_log.clear_fingerprint(db, env.client_id, provider, env.entity.value, env.cw_id)
    inbox.mark_finished(db, env.client_id, env.id, "echo_ignored", checked=True)
