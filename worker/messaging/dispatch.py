"""One delivery in, one Outcome out: parse the envelope, find the client's connection, and hand the
change to its direction (``outbound``: a CW change to push; ``inbound``: an ERP change to apply).

The Outcome carries its journal; the runner settles the message and commits the journal with it.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol

from contracts import DeadLetterReason, InvalidEnvelopeError, parse_envelope
from providers.errors import PermanentError
from worker.buses.base import Delivery
from worker.cw.port import CWApi
from worker.db import Database
from worker.logging import bind_contextvars, get_logger
from worker.messaging import order
from worker.messaging.connections import CredentialsUnreadable, ErpConnection
from worker.messaging.inbound import InboundHandler
from worker.messaging.journal import Begin
from worker.messaging.outbound import NO_CW, OutboundHandler
from worker.messaging.outcomes import DeadLetter, Outcome, Retry
from worker.messaging.retry import RetryPolicy, attempt_of
from worker.messaging.slots import CallSlots

log = get_logger()

DEFAULT_LEASE_S = 120.0
"""How long a record's lease holds when its holder dies without letting it go (a redelivery of the
same message takes it over at once)."""
DEFAULT_BUSY_WAIT_S = 5.0
KEY_PROBLEM_DELAY_S = 60.0
"""A message whose connection's credentials this worker cannot decrypt waits this long (uncounted):
the operator fixes CWI_SECRET_KEY; nothing is dead-lettered for it."""
"""How long a message waits for a record another message is working on before it steps aside."""


class ConnectionLookup(Protocol):
    async def connection_for(self, client_id: str) -> ErpConnection: ...


class Dispatcher:
    """The runner's handler. ``max_calls`` bounds the ERP pushes in flight. ``exclusive_sessions``:
    the bus hands a session's messages out one at a time (the local bus), so an outbound message
    whose session is its client needs no record lease on its first delivery (``OutboundHandler``)."""

    def __init__(
        self,
        db: Database,
        connections: ConnectionLookup,
        policy: RetryPolicy,
        *,
        cw: CWApi | None = None,
        max_calls: int | None = None,
        lease_s: float = DEFAULT_LEASE_S,
        busy_wait_s: float = DEFAULT_BUSY_WAIT_S,
        exclusive_sessions: bool = False,
    ) -> None:
        self.db = db
        self.connections = connections
        self.begin = Begin(db, lease_s=lease_s, wait_s=busy_wait_s)
        calls = CallSlots(max_calls) if max_calls else None
        self.outbound = OutboundHandler(policy, cw=cw, calls=calls, exclusive_sessions=exclusive_sessions)
        self.inbound = InboundHandler(db, cw, policy) if cw is not None else None

    async def handle(self, delivery: Delivery) -> Outcome:
        # Every log line about this message, to its settlement, names it (the runner handles each
        # delivery in a task of its own, so these context variables are the message's).
        bind_contextvars(transport_message_id=delivery.message_id, client_id=delivery.session_id)
        try:
            env = parse_envelope(delivery.body)
        except InvalidEnvelopeError as exc:
            return DeadLetter(DeadLetterReason.InvalidEnvelope, str(exc))
        bind_contextvars(
            message_id=env.id,
            client_id=env.client_id,
            type=env.type,
            direction="inbound" if env.inbound else "outbound",
        )
        if env.inbound and self.inbound is None:
            return DeadLetter(DeadLetterReason.NotSupported, f"webhook events: {NO_CW}")
        if (wrong_time := order.too_far_ahead(env, dt.datetime.now(dt.UTC))) is not None:
            return DeadLetter(DeadLetterReason.InvalidEnvelope, wrong_time)
        try:
            conn = await self.connections.connection_for(env.client_id)
        except PermanentError as exc:
            return DeadLetter(exc.reason, str(exc))
        except CredentialsUnreadable as exc:
            log.error(
                "cannot read the connection's credentials; the message waits",
                client_id=env.client_id,
                error=str(exc),
            )
            return Retry(KEY_PROBLEM_DELAY_S, attempt_of(delivery), str(exc))
        bind_contextvars(provider=conn.kind)
        if env.inbound:
            assert self.inbound is not None
            return await self.inbound.handle(env, delivery, conn, self.begin)
        return await self.outbound.handle(env, delivery, conn, self.begin)
