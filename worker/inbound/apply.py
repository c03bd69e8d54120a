"""The inbound path: one webhook envelope (a change made in the ERP) applied to CW, or ignored as an echo.

connection → inbox + link + intent journal → the ERP's record (fetched when the webhook did not
carry it; gone means deleted) → echo check → map to CW fields → CW Write API → journal ``inbound``
(both ids) or ``echo_ignored``, the link saved both ways, the inbox marked.
"""

from __future__ import annotations

from typing import Any, Protocol

from config_db.sync_log import Link
from contracts import Action, DeadLetterReason, Envelope, ExternalChange
from providers.base import content_hash
from providers.errors import PermanentError, TransientError
from worker.buses.base import Delivery
from worker.cw.port import CWApi
from worker.db import Database
from worker.inbound import journal
from worker.inbound.directory import InboundConnection
from worker.inbound.echo import ErpState, echo_reason
from worker.inbound.fingerprint import DELETED, cw_fields, fields_fingerprint
from worker.logging import get_logger
from worker.outcomes import Complete, DeadLetter, Outcome, Retry
from worker.retry import ATTEMPT_PROPERTY, RetryPolicy

log = get_logger()


class InboundLookup(Protocol):
    async def inbound_for(self, client_id: str) -> InboundConnection: ...


class InboundHandler:
    def __init__(self, db: Database, connections: InboundLookup, cw: CWApi, policy: RetryPolicy) -> None:
        self.db = db
        self.connections = connections
        self.cw = cw
        self.policy = policy

    async def handle(self, env: Envelope, delivery: Delivery) -> Outcome:
        external = env.external
        assert external is not None, "only webhook envelopes take the inbound path"
        try:
            conn = await self.connections.inbound_for(env.client_id)
        except PermanentError as exc:
            return DeadLetter(exc.reason, str(exc))
        if conn.kind != external.provider:
            return DeadLetter(
                DeadLetterReason.UnknownClient,
                f"a {external.provider} webhook for client {env.client_id!r}, "
                f"whose connection is {conn.kind}",
            )
        kind = conn.kind
        start = await self.db.batched(lambda db: journal.begin(env, kind, db))
        if start.finished is not None:
            return Complete("duplicate")
        try:
            result = await self.policy.call(lambda: self._apply(env, external, conn, start))
        except TransientError as exc:
            return await self._transient(env, kind, start.cw_id, delivery, exc)
        except PermanentError as exc:
            failure = DeadLetter(exc.reason, str(exc))
            detail = f"{failure.reason}: {failure.description}"
            await self.db.batched(lambda db: journal.fail(env, kind, start.cw_id, "failed", detail, db))
            return failure
        await self.db.batched(lambda db: journal.finish(env, kind, result, db))
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
        return Complete(result.action)

    async def _apply(
        self, env: Envelope, external: ExternalChange, conn: InboundConnection, start: journal.InboundStart
    ) -> journal.InboundResult:
        state = await self._erp_state(env, external, conn)
        reason = echo_reason(state, start.link, conn.api_user)
        if reason is not None:
            return journal.InboundResult("echo_ignored", start.cw_id, reason)
        if state.deleted:
            return await self._delete(env, start)
        assert state.value is not None
        draft = conn.provider.to_cw(env.entity, state.value)
        # TODO(lead): resolve draft.references (customer_id, project_id) through the record links.
        fields = cw_fields(env.entity, dict(draft.fields))
        cw_id = await self._write(env, start, fields)
        link = Link(
            external.external_id,
            state.version,
            state.content_hash,
            False,
            fields_fingerprint(env.entity, fields),
        )
        return journal.InboundResult("inbound", cw_id, None, link)

    async def _erp_state(self, env: Envelope, external: ExternalChange, conn: InboundConnection) -> ErpState:
        if env.action is Action.deleted:
            return ErpState(True, None, external.version, external.author, None)
        value: dict[str, Any] | None = external.value
        version, author = external.version, external.author
        if value is None:
            record = await conn.provider.fetch(env.entity, external.external_id)
            if record is None:
                return ErpState(True, None, version, author, None)
            value, version, author = dict(record.value), record.version or version, record.author
        return ErpState(False, value, version, author, content_hash(value))

    async def _write(self, env: Envelope, start: journal.InboundStart, fields: dict[str, Any]) -> str:
        """Update the linked CW record (or the one the ERP named); create it when CW has none."""
        known = start.cw_id if start.link is None or not start.link.deleted else None
        if known is not None and await self.cw.update(env.client_id, env.entity, known, fields, key=env.id):
            return known
        return await self.cw.create(env.client_id, env.entity, fields, key=f"{env.id}:create")

    async def _delete(self, env: Envelope, start: journal.InboundStart) -> journal.InboundResult:
        external = env.external
        assert external is not None
        if start.cw_id is None or start.link is None:
            return journal.InboundResult("unchanged", start.cw_id, "deleted in the ERP, never known to CW")
        existed = await self.cw.delete(env.client_id, env.entity, start.cw_id, key=env.id)
        link = Link(external.external_id, external.version, None, True, DELETED)
        detail = None if existed else "already gone from CW"
        return journal.InboundResult("inbound", start.cw_id, detail, link)

    async def _transient(
        self, env: Envelope, kind: str, cw_id: str | None, delivery: Delivery, exc: TransientError
    ) -> Outcome:
        attempt = int(delivery.properties.get(ATTEMPT_PROPERTY, 0))
        delay = self.policy.next_delay(attempt, exc.retry_after)
        if delay is None:
            detail = f"RetriesExhausted after {attempt} delayed retries: {exc}"
            await self.db.batched(lambda db: journal.fail(env, kind, cw_id, "failed", detail, db))
            return DeadLetter(
                DeadLetterReason.RetriesExhausted, f"gave up after {attempt + 1} attempts: {exc}"
            )
        retry = f"retry in {delay:g} s: {exc}"
        await self.db.batched(lambda db: journal.fail(env, kind, cw_id, "retry", retry, db))
        return Retry(delay, attempt + 1, str(exc))
