"""The outbound path: one CW change pushed to the client's ERP. Reads top to bottom like the design:

lease + inbox + link + order + reverse echo + intent (``journal.begin_outbound``) → (thin event:
fill from CW) → push (in-process retries) → the outcome with its journal (outcome row, link with
the record's new order key, echo marks, inbox, lease let go), committed with the settlement.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager, nullcontext

from config_db.leases import CW
from contracts import Action, DeadLetterReason, Envelope
from providers.base import OutboundChange, Provider, PushResult
from providers.errors import PermanentError, TransientError
from worker import tracing
from worker.buses.base import Delivery
from worker.cw.port import CWApi
from worker.cw.thin import fill_thin_event
from worker.logging import get_logger
from worker.messaging import journal, retry
from worker.messaging.connections import ErpConnection
from worker.messaging.journal import Begin, OutboundStart
from worker.messaging.outcomes import Changed, Complete, DeadLetter, Outcome
from worker.messaging.retry import RetryPolicy
from worker.messaging.slots import CallSlots

log = get_logger()

NO_CW = "CW's APIs are not configured (set CWI_CW_GRAPHQL_URL, CWI_CW_WRITE_URL and CWI_CW_API_KEY)"


class OutboundHandler:
    """``calls`` bounds the ERP calls in flight; messages beyond it have journalled their intent and
    wait for a free call, so a call that finishes is followed at once by the next."""

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        cw: CWApi | None,
        calls: CallSlots | None,
        exclusive_sessions: bool = False,
    ) -> None:
        self.policy = policy
        self.cw = cw
        self._calls = calls
        self._exclusive_sessions = exclusive_sessions

    def _slot(self, client: str) -> AbstractAsyncContextManager[object]:
        return self._calls.slot(client) if self._calls is not None else nullcontext()

    async def handle(self, env: Envelope, delivery: Delivery, conn: ErpConnection, begin: Begin) -> Outcome:
        thin = env.data is None and env.action is not Action.deleted
        if thin and self.cw is None:
            return DeadLetter(DeadLetterReason.NotSupported, f"{env.type} without data: {NO_CW}")
        kind = conn.kind
        # The bus already runs this client's messages one at a time: the record's lease would only
        # cost two writes. A redelivery takes it (an earlier delivery may still be at work) and
        # writes as if contested.
        exclusive = self._exclusive_sessions and delivery.session_id == env.client_id
        lease = None
        if not exclusive or delivery.delivery_count > 1:
            lease = journal.lease_for(env, kind, CW, env.cw_id, delivery.message_id)
        start = await begin(
            lambda c, ms: journal.begin_outbound(
                c, env, kind, lease, lease_ms=ms, ordered=not thin, exclusive=exclusive
            )
        )
        if start is None:
            return retry.busy(delivery, f"the {env.entity.value} {env.cw_id!r}")
        if start.finished is not None:
            self._said(env, kind, "duplicate", outcome="duplicate")
            return Complete("duplicate", journal.outbound_duplicate(env, kind, start))
        if start.skip is not None:
            self._said(env, kind, start.skip, outcome=start.skip, detail=start.detail)
            return Complete(start.skip, journal.outbound_skipped(env, kind, start))
        if thin:
            filled = await self._fill(env, kind, delivery, start)
            if not isinstance(filled, Envelope):
                return filled
            env = filled
        return await self._push(env, delivery, conn.provider, start)

    @staticmethod
    def _said(env: Envelope, kind: str, event: str, **fields: object) -> None:
        log.info(event, message_id=env.id, client_id=env.client_id, provider=kind, type=env.type, **fields)

    async def _push(
        self, env: Envelope, delivery: Delivery, provider: Provider, start: OutboundStart
    ) -> Outcome:
        kind = provider.kind
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
            async with self._slot(env.client_id):
                with tracing.step("push", **{"cwi.provider": kind}):
                    result: PushResult = await self.policy.call(lambda: provider.push(change))
        except TransientError as exc:
            return self._transient(env, kind, delivery, start, exc)
        except PermanentError as exc:
            failed = journal.outbound_failed(env, kind, start, "failed", f"{exc.reason}: {exc}")
            return DeadLetter(exc.reason, str(exc), failed)
        log.info(
            "pushed",
            message_id=env.id,
            client_id=env.client_id,
            provider=kind,
            type=env.type,
            outcome=result.outcome,
            external_id=result.external_id,
        )
        pushed = journal.outbound_pushed(env, kind, result, start)
        return Complete(result.outcome, pushed, Changed(env, env.cw_id))

    def _transient(
        self, env: Envelope, kind: str, delivery: Delivery, start: OutboundStart, exc: TransientError
    ) -> Outcome:
        return retry.after_transient(
            self.policy,
            delivery,
            exc,
            lambda action, detail: journal.outbound_failed(env, kind, start, action, detail, in_doubt=True),
        )

    async def _fill(
        self, env: Envelope, kind: str, delivery: Delivery, start: OutboundStart
    ) -> Envelope | Outcome:
        """A thin event completed from CW's Query API (under the record's lease: the data read is
        what gets pushed, never older), or the outcome when that cannot be done."""
        assert self.cw is not None
        cw = self.cw
        try:
            with tracing.step("fill"):
                filled = await self.policy.call(lambda: fill_thin_event(cw, env))
        except TransientError as exc:
            return self._transient(env, kind, delivery, start, exc)
        except PermanentError as exc:
            failed = journal.outbound_failed(env, kind, start, "failed", f"{exc.reason}: {exc}")
            return DeadLetter(exc.reason, str(exc), failed)
        if filled is None:
            # Deleted in CW since: its delete event follows; there is nothing to push.
            return Complete("unchanged", journal.outbound_unchanged(env, kind, start, "no longer in CW"))
        return filled
