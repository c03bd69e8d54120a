"""The inbound path: one webhook envelope (a change made in the ERP) applied to CW, or ignored as an echo.

leases + inbox + link + marks + intent (``inbound_journal.begin_inbound``) → the ERP's record (fetched when
the webhook did not carry it; gone means deleted) → echo check → map to CW fields → CW Write API
→ the outcome with its journal: ``inbound`` (both ids, the link both ways, marks on both sides) or
``echo_ignored``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from config_db.marks import HASH, TOMBSTONE, VERSION, Mark
from config_db.sync_log import Link
from contracts import Action, DeadLetterReason, Envelope, ExternalChange
from providers.base import content_hash
from providers.errors import NotSupported, PermanentError, TransientError
from worker.buses.base import Delivery
from worker.cw.port import CWApi
from worker.db import Database
from worker.logging import get_logger
from worker.messaging import inbound_journal, retry
from worker.messaging.connections import ErpConnection
from worker.messaging.echo import ErpState, echo_reason
from worker.messaging.fingerprint import DELETED, cw_fields, fields_fingerprint
from worker.messaging.inbound_journal import InboundResult, InboundStart
from worker.messaging.journal import Begin
from worker.messaging.outcomes import Changed, Complete, DeadLetter, Outcome
from worker.messaging.retry import RetryPolicy
from worker.tracing import step

log = get_logger()


class InboundHandler:
    def __init__(self, db: Database, cw: CWApi, policy: RetryPolicy) -> None:
        self.db = db
        self.cw = cw
        self.policy = policy

    async def handle(self, env: Envelope, delivery: Delivery, conn: ErpConnection, begin: Begin) -> Outcome:
        external = env.external
        assert external is not None, "only webhook envelopes take the inbound path"
        if conn.kind != external.provider:
            return DeadLetter(
                DeadLetterReason.UnknownClient,
                f"a {external.provider} webhook for client {env.client_id!r}, "
                f"whose connection is {conn.kind}",
            )
        kind = conn.kind
        start = await begin(
            lambda c, ms: inbound_journal.begin_inbound(c, env, kind, delivery.message_id, lease_ms=ms)
        )
        if start is None:
            return retry.busy(delivery, f"the {env.entity.value} {external.external_id!r}")
        if start.finished is not None:
            return Complete("duplicate", inbound_journal.inbound_duplicate(env, kind, start))
        try:
            with step("apply", **{"cwi.provider": kind}):
                result = await self.policy.call(lambda: self._apply(env, external, conn, start))
        except TransientError as exc:
            return retry.after_transient(
                self.policy,
                delivery,
                exc,
                lambda action, detail: inbound_journal.inbound_failed(env, kind, start, action, detail),
            )
        except PermanentError as exc:
            detail = f"{exc.reason}: {exc}"
            return DeadLetter(
                exc.reason, str(exc), inbound_journal.inbound_failed(env, kind, start, "failed", detail)
            )
        log.info(
            result.action,
            message_id=env.id,
            client_id=env.client_id,
            provider=kind,
            type=env.type,
            cw_id=result.cw_id,
            external_id=external.external_id,
            outcome=result.action,
        )
        changed = (
            Changed(env, result.cw_id, result.written)
            if result.action == "inbound" and result.cw_id
            else None
        )
        return Complete(result.action, inbound_journal.inbound_finished(env, kind, start, result), changed)

    async def _apply(
        self, env: Envelope, external: ExternalChange, conn: ErpConnection, start: InboundStart
    ) -> InboundResult:
        state = await self._erp_state(env, external, conn)
        identity = await conn.identity()
        reason = echo_reason(state, start.link, start.written, identity, conn.version_kind)
        if reason is None and start.link is None and external.value is not None and not state.deleted:
            # About to create a record in CW from the webhook's copy: read what the ERP holds now,
            # since a late copy may describe a record deleted since (or re-created under a new id
            # by our own push, which CW already has).
            state = await self._current(env, external, conn, state)
            reason = echo_reason(state, start.link, start.written, identity, conn.version_kind)
        if reason is not None:
            return InboundResult("echo_ignored", start.cw_id, reason)
        if state.deleted:
            return await self._delete(env, start, state)
        assert state.value is not None
        draft = conn.inbound().to_cw(env.entity, state.value)
        resolved = await self.db.run(lambda c: inbound_journal.resolve(c, env, conn.kind, draft.references))
        fields = cw_fields(env.entity, {**draft.fields, **resolved})
        written = await self._write(env, start, fields)
        if written is None:
            return InboundResult(
                "unchanged", start.cw_id, "deleted in CW meanwhile; its delete event follows"
            )
        written_id, cw_version = written
        link = Link(
            external.external_id,
            state.version,
            state.content_hash,
            False,
            fields_fingerprint(env.entity, fields),
            _newer(cw_version, start.link.cw_sequence if start.link else None),
            start.link.cw_at if start.link else None,
        )
        applied = [Mark(VERSION, state.version)] if state.version else []
        if state.content_hash:
            applied.append(Mark(HASH, state.content_hash))
        return InboundResult("inbound", written_id, None, link, tuple(applied), link.cw_fingerprint, fields)

    async def _current(
        self, env: Envelope, external: ExternalChange, conn: ErpConnection, reported: ErpState
    ) -> ErpState:
        """The record as the ERP holds it now (the report itself where the ERP cannot be read)."""
        try:
            record = await conn.inbound().fetch(env.entity, external.external_id)
        except NotSupported:
            return reported  # generic REST reads by CW id only; its webhooks carry the record
        if record is None:
            return ErpState(True, None, None, reported.author, None)
        value = dict(record.value)
        return ErpState(False, value, record.version or reported.version, record.author, content_hash(value))

    async def _erp_state(self, env: Envelope, external: ExternalChange, conn: ErpConnection) -> ErpState:
        if env.action is Action.deleted:
            return ErpState(True, None, external.version, external.author, None)
        value: dict[str, Any] | None = external.value
        version, author = external.version, external.author
        if value is None:
            record = await conn.inbound().fetch(env.entity, external.external_id)
            if record is None:
                # Gone now, whatever version the report named: the delete is the truth.
                return ErpState(True, None, None, author, None)
            value, version, author = dict(record.value), record.version or version, record.author
        return ErpState(False, value, version, author, content_hash(value))

    async def _write(
        self, env: Envelope, start: InboundStart, fields: dict[str, Any]
    ) -> tuple[str, int | None] | None:
        """Update the linked CW record (or the one the ERP named); create it when CW has none.

        None: the record is CW's (linked, or the ERP named its CW id) but CW deleted it meanwhile.
        CW's delete event is on its way and deletes it in the ERP too; creating it again in CW
        would leave the two sides apart. Only a record born in the ERP is created in CW."""
        known = start.cw_id if start.link is None or not start.link.deleted else None
        if known is not None:
            updated = await self.cw.update(env.client_id, env.entity, known, fields, key=env.id)
            return None if updated is None else (updated.cw_id, updated.version)
        created = await self.cw.create(env.client_id, env.entity, fields, key=f"{env.id}:create")
        return created.cw_id, created.version

    async def _delete(self, env: Envelope, start: InboundStart, state: ErpState) -> InboundResult:
        """Deleted in the ERP: deleted in CW, and a tombstone kept either way, so that a late
        create or update webhook of the record does not bring it back."""
        external = env.external
        assert external is not None
        tombstone = (Mark(TOMBSTONE, state.version or external.version or ""),)
        if start.cw_id is None or start.link is None:
            never = "deleted in the ERP, never known to CW"
            return InboundResult("unchanged", start.cw_id, never, applied=tombstone)
        existed = await self.cw.delete(env.client_id, env.entity, start.cw_id, key=env.id)
        # CW answers a delete with no version: the order key becomes the time of the delete, so a
        # CW event made before it (still on its way) is superseded instead of re-creating the record.
        link = Link(external.external_id, external.version, None, True, DELETED, None, _now())
        detail = None if existed else "already gone from CW"
        return InboundResult("inbound", start.cw_id, detail, link, tombstone, DELETED)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _newer(a: int | None, b: int | None) -> int | None:
    known = [v for v in (a, b) if v is not None]
    return max(known) if known else None
