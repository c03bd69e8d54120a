"""Messages out to the SDK's receivers, and the settlement outcomes that come back.

Peek-lock deliveries carry the lock token as their tag; the receiver settles with a
disposition (rcv-settle-mode second), which is applied to the entity and echoed, settled.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import proton
from proton import Delivery, Endpoint, Link

from tests.servicebus_peer import codec
from tests.servicebus_peer.entities import LockLost, Queue, SessionLockLost


@dataclass(eq=False)
class ClientConnection:
    """One SDK connection; also the owner of the message locks taken over it."""

    connection: proton.Connection
    closed_by_client: bool = False
    reply_links: dict[str, Link] = field(default_factory=dict)


@dataclass(eq=False)
class Consumer:
    """A peer-side sender link feeding one SDK receiver."""

    link: Link
    queue: Queue
    client: ClientConnection
    receive_and_delete: bool
    session_id: str | None = None


@dataclass(eq=False)
class _Outgoing:
    queue: Queue
    token: uuid.UUID


def new_delivery(link: Link, tag: bytes) -> Delivery:
    # proton annotates the tag as str; the engine takes bytes, and lock tokens are bytes.
    return link.delivery(cast(Any, tag))


def _dead_letter_details(delivery: Delivery) -> tuple[str | None, str | None]:
    condition = delivery.remote.condition
    info = condition.info if condition is not None else None
    info = info if isinstance(info, dict) else {}
    reason, description = info.get("DeadLetterReason"), info.get("DeadLetterErrorDescription")
    return (None if reason is None else str(reason)), (None if description is None else str(description))


class Deliveries:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.consumers: dict[Link, Consumer] = {}
        self._unsettled: dict[Delivery, _Outgoing] = {}
        self._by_token: dict[uuid.UUID, Delivery] = {}

    def add(self, consumer: Consumer) -> None:
        self.consumers[consumer.link] = consumer
        self.feed(consumer)

    def drop(self, link: Link) -> Consumer | None:
        """Forget the link's consumer; a session it held is given up."""
        consumer = self.consumers.pop(link, None)
        if consumer is None:
            return None
        if consumer.session_id is not None:
            info = consumer.queue.sessions.get(consumer.session_id)
            if info is not None and info.owner is consumer:
                consumer.queue.unlock_session(consumer.session_id)
        for delivery, outgoing in list(self._unsettled.items()):
            if delivery.link == link:
                # A message lock outlives its link: the SDK may still settle through $management.
                del self._unsettled[delivery]
                self._by_token.pop(outgoing.token, None)
        return consumer

    # -- out ---------------------------------------------------------------------------------

    def dispatch(self, queues: list[Queue] | None = None) -> None:
        """Feed every consumer (of ``queues``, if given) as far as its credit goes."""
        for consumer in list(self.consumers.values()):
            if queues is None or consumer.queue in queues:
                self.feed(consumer)

    def feed(self, consumer: Consumer) -> None:
        link = consumer.link
        if not link.state & Endpoint.LOCAL_ACTIVE:
            return
        while link.credit > 0:
            stored = consumer.queue.next_available(consumer.session_id)
            if stored is None:
                break
            if consumer.receive_and_delete:
                body = codec.encode_for_delivery(stored)
                consumer.queue.remove(stored)
                delivery = new_delivery(link, uuid.uuid4().bytes_le)
                link.send(body)
                link.advance()
                delivery.settle()
                continue
            lock = consumer.queue.lock(stored, consumer.client, self._clock())
            delivery = new_delivery(link, lock.token.bytes_le)
            link.send(codec.encode_for_delivery(stored, lock=lock))
            link.advance()
            self._unsettled[delivery] = _Outgoing(consumer.queue, lock.token)
            self._by_token[lock.token] = delivery
        if link.drain_mode and link.credit > 0:
            link.drained()

    # -- back --------------------------------------------------------------------------------

    def settled_elsewhere(self, tokens: list[uuid.UUID]) -> None:
        """Settled through $management: settle the link deliveries too, so none linger."""
        for token in tokens:
            delivery = self._by_token.pop(token, None)
            if delivery is not None:
                self._unsettled.pop(delivery, None)
                delivery.settle()

    def on_disposition(self, delivery: Delivery) -> None:
        if not delivery.remote_state and not delivery.remote_settled:
            return
        outgoing = self._unsettled.pop(delivery, None)
        if outgoing is None:  # a $cbs/$management reply, or settled another way
            delivery.settle()
            return
        self._by_token.pop(outgoing.token, None)
        try:
            self._apply(outgoing, delivery)
        except (LockLost, SessionLockLost) as error:
            name = "session-lock-lost" if isinstance(error, SessionLockLost) else "message-lock-lost"
            delivery.local.condition = codec.condition(f"com.microsoft:{name}", str(error))
            delivery.update(Delivery.REJECTED)
        else:
            self._echo(delivery)
        delivery.settle()
        self.dispatch([outgoing.queue])

    def _apply(self, outgoing: _Outgoing, delivery: Delivery) -> None:
        q, token, now, remote = outgoing.queue, outgoing.token, self._clock(), delivery.remote
        state = delivery.remote_state
        if state == Delivery.ACCEPTED:
            q.complete(token, now)
        elif state == Delivery.REJECTED:
            q.dead_letter(token, now, *_dead_letter_details(delivery))
        elif state == Delivery.MODIFIED and remote.undeliverable:
            q.defer(token, now)
        elif state == Delivery.MODIFIED and remote.failed:
            q.abandon(token, now, dict(remote.annotations or {}))
        else:  # released, modified without failure, or settled with no outcome
            q.release(token, now)

    @staticmethod
    def _echo(delivery: Delivery) -> None:
        """Confirm the outcome the client asked for: with rcv-settle-mode second it waits for this."""
        state = delivery.remote_state
        if state == Delivery.MODIFIED:
            delivery.local.failed = delivery.remote.failed
            delivery.local.undeliverable = delivery.remote.undeliverable
        if state:
            delivery.update(state)  # a rejected echo carries no error: the SDK would read it as a failure
