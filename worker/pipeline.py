"""The message pipeline: one delivery in, one Outcome out. Reads top to bottom like the design:

parse → inbox → connection → provider → intent journal → push → outcome journal → (settle, by the runner)
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any, Protocol

from sqlalchemy import Connection

from config_db import inbox, sync_log
from contracts import Action, DeadLetterReason, Envelope, InvalidEnvelopeError, parse_envelope
from providers.base import OutboundChange, Provider, PushResult
from providers.errors import PermanentError, TransientError
from worker.buses.base import Delivery
from worker.cw.port import CWApi
from worker.cw.thin import fill_thin_event
from worker.db import Database
from worker.inbound import journal as inbound_journal
from worker.inbound.apply import InboundHandler
from worker.inbound.echo import is_reverse_echo
from worker.logging import get_logger
from worker.outcomes import Complete, DeadLetter, Outcome, Retry
from worker.retry import ATTEMPT_PROPERTY, RetryPolicy

log = get_logger()


_NO_CW = "CW's APIs are not configured (set CWI_CW_GRAPHQL_URL, CWI_CW_WRITE_URL and CWI_CW_API_KEY)"


class ProviderLookup(Protocol):
    async def provider_for(self, client_id: str) -> Provider: ...


def _entry(env: Envelope, provider: str, action: str, **fields: Any) -> sync_log.Entry:
    return sync_log.Entry(
        direction="outbound",
        action=action,
        message_id=env.id,
        client_id=env.client_id,
        provider=provider,
        entity=env.entity.value,
        cw_id=env.cw_id,
        **fields,
    )


def _begin(env: Envelope, provider: str, db: Connection) -> sync_log.MessageState:
    """Inbox check, last written state and intent journal, in one transaction."""
    state = sync_log.message_state(db, env.client_id, env.id, provider, env.entity.value, env.cw_id)
    if state.finished is not None:
        sync_log.record(db, _entry(env, provider, "duplicate", detail=f"already {state.finished}"))
        return state
    detail = "recovering: an earlier attempt may have reached the ERP" if state.open_intent else None
    sync_log.record(db, _entry(env, provider, "pending", detail=detail))
    return state


def _finish(env: Envelope, provider: str, result: PushResult, had_link: bool, db: Connection) -> None:
    """Outcome journal, record link and inbox, in one transaction."""
    sync_log.record(
        db,
        _entry(
            env,
            provider,
            result.outcome,
            external_id=result.external_id,
            version=result.version,
            content_hash=result.content_hash,
            detail=f"author {result.author}" if result.author else None,
        ),
    )
    link = sync_log.Link(result.external_id, result.version, result.content_hash, result.outcome == "deleted")
    sync_log.save_link(db, env.client_id, provider, env.entity.value, env.cw_id, link, exists=had_link)
    inbox.mark_finished(db, env.client_id, env.id, result.outcome, checked=True)


def _fail(env: Envelope, provider: str, action: str, detail: str, db: Connection) -> None:
    sync_log.record(db, _entry(env, provider, action, detail=detail))


class Pipeline:
    """``max_calls`` bounds the ERP calls in flight; messages beyond it journal their intent and
    wait for a free call, so a call that finishes is followed at once by the next."""

    def __init__(
        self,
        db: Database,
        providers: ProviderLookup,
        policy: RetryPolicy,
        *,
        cw: CWApi | None = None,
        inbound: InboundHandler | None = None,
        max_calls: int | None = None,
    ) -> None:
        self.db = db
        self.providers = providers
        self.policy = policy
        self.cw = cw
        self.inbound = inbound
        self._calls = asyncio.Semaphore(max_calls) if max_calls else None

    async def _push(self, provider: Provider, change: OutboundChange) -> PushResult:
        if self._calls is None:
            return await self.policy.call(lambda: provider.push(change))
        async with self._calls:
            return await self.policy.call(lambda: provider.push(change))

    async def handle(self, delivery: Delivery, *, defer_journal: bool = False) -> Outcome:
        """The outcome for one delivery. With ``defer_journal`` a successful push's outcome journal
        is returned in ``Complete.journal`` for the caller to commit with the settlement."""
        try:
            env = parse_envelope(delivery.body)
        except InvalidEnvelopeError as exc:
            return DeadLetter(DeadLetterReason.InvalidEnvelope, str(exc))
        if env.inbound:
            if self.inbound is None:
                return DeadLetter(DeadLetterReason.NotSupported, f"webhook events: {_NO_CW}")
            return await self.inbound.handle(env, delivery)
        thin = env.data is None and env.action is not Action.deleted
        if thin and self.cw is None:
            return DeadLetter(DeadLetterReason.NotSupported, f"{env.type} without data: {_NO_CW}")
        bound = log.bind(message_id=env.id, client_id=env.client_id, type=env.type)
        try:
            provider = await self.providers.provider_for(env.client_id)
        except PermanentError as exc:
            return DeadLetter(exc.reason, str(exc))
        kind = provider.kind
        if thin:
            filled = await self._fill(env, kind, delivery)
            if not isinstance(filled, Envelope):
                return filled
            env = filled
        start = await self.db.batched(lambda db: _begin(env, kind, db))
        if start.finished is not None:
            bound.info("duplicate", provider=kind, outcome="duplicate")
            return Complete("duplicate")
        if (
            start.link is not None
            and start.link.cw_fingerprint is not None
            and is_reverse_echo(env, start.link)
        ):
            await self.db.batched(lambda db: inbound_journal.reverse_echo(env, kind, db))
            bound.info("echo_ignored", provider=kind, outcome="echo_ignored")
            return Complete("echo_ignored")
        change = OutboundChange(
            idempotency_key=env.id,
            entity=env.entity,
            action=env.action,
            cw_id=env.cw_id,
            record=env.data,
            known_external_id=start.link.external_id if start.link else None,
            recovering=start.open_intent,
        )
        try:
            result = await self._push(provider, change)
        except TransientError as exc:
            return await self._transient(env, kind, delivery, exc)
        except PermanentError as exc:
            failure = DeadLetter(exc.reason, str(exc))
            await self.db.batched(
                lambda db: _fail(env, kind, "failed", f"{failure.reason}: {failure.description}", db)
            )
            return failure
        had_link = start.link is not None
        bound.info("pushed", provider=kind, outcome=result.outcome, external_id=result.external_id)
        journal = partial(_finish, env, kind, result, had_link)
        if defer_journal:
            return Complete(result.outcome, journal)
        await self.db.batched(journal)
        return Complete(result.outcome)

    async def _fill(self, env: Envelope, kind: str, delivery: Delivery) -> Envelope | Outcome:
        """A thin event completed from CW's Query API, or the outcome when that cannot be done."""
        assert self.cw is not None
        cw = self.cw
        try:
            filled = await self.policy.call(lambda: fill_thin_event(cw, env))
        except TransientError as exc:
            return await self._transient(env, kind, delivery, exc)
        except PermanentError as exc:
            return DeadLetter(exc.reason, str(exc))
        if filled is None:
            # Deleted in CW since: its delete event follows; there is nothing to push.
            await self.db.batched(lambda db: _fail(env, kind, "unchanged", "no longer in CW", db))
            return Complete("unchanged")
        return filled

    async def _transient(self, env: Envelope, kind: str, delivery: Delivery, exc: TransientError) -> Outcome:
        attempt = int(delivery.properties.get(ATTEMPT_PROPERTY, 0))
        delay = self.policy.next_delay(attempt, exc.retry_after)
        # The pending intent stays open: a timeout may hide a write that reached the ERP, so the
        # next attempt looks the record up before creating it.
        if delay is None:
            detail = f"RetriesExhausted after {attempt} delayed retries: {exc}"
            await self.db.batched(lambda db: _fail(env, kind, "failed", detail, db))
            return DeadLetter(
                DeadLetterReason.RetriesExhausted, f"gave up after {attempt + 1} attempts: {exc}"
            )
        await self.db.batched(lambda db: _fail(env, kind, "retry", f"retry in {delay:g} s: {exc}", db))
        return Retry(delay, attempt + 1, str(exc))


__all__ = ["Complete", "DeadLetter", "Outcome", "Pipeline", "Retry"]
