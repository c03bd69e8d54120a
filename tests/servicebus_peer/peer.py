"""``ServiceBusPeer``: the test peer on 127.0.0.1, its fault switches and what tests may inspect."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import proton
from proton.reactor import Container

from tests.servicebus_peer.broker import Broker
from tests.servicebus_peer.entities import EntityOptions, MessageState, StoredMessage
from tests.servicebus_peer.handler import PeerHandler

_log = logging.getLogger(__name__)
LISTEN_BACKLOG = 1024


class PeerFailed(RuntimeError):
    """The peer's event loop died; every later call, and leaving the ``with`` block, raises this."""


@dataclass(frozen=True)
class MessageSnapshot:
    """One stored message as a test sees it. ``state``: active, locked, deferred or scheduled."""

    sequence_number: int
    message_id: Any
    session_id: str | None
    body: Any
    application_properties: dict[str, Any]
    delivery_count: int
    state: str
    enqueued_time: float
    scheduled_enqueue_time: float | None
    dead_letter_reason: str | None
    dead_letter_description: str | None


def _snapshot(stored: StoredMessage) -> MessageSnapshot:
    props: dict[str, Any] = dict(stored.message.properties or {})
    state = stored.state.name.lower()
    if stored.state is MessageState.ACTIVE and stored.lock is not None:
        state = "locked"
    return MessageSnapshot(
        sequence_number=stored.sequence_number,
        message_id=stored.message.id,
        session_id=stored.session_id,
        body=stored.message.body,
        application_properties=props,
        delivery_count=stored.delivery_count,
        state=state,
        enqueued_time=stored.enqueued_time,
        scheduled_enqueue_time=stored.scheduled_time,
        dead_letter_reason=props.get("DeadLetterReason"),
        dead_letter_description=props.get("DeadLetterErrorDescription"),
    )


class ServiceBusPeer:
    """An AMQP 1.0 peer the real azure-servicebus SDK can use as its namespace.

    ``entities`` maps queue and topic names to their options; a topic is an entry whose options
    list ``subscriptions``, received from as ``<topic>/Subscriptions/<name>``.
    """

    def __init__(self, entities: Mapping[str, EntityOptions] | None = None, host: str = "127.0.0.1") -> None:
        self._host = host
        self._broker = Broker(entities or {})
        self._handler = PeerHandler(self._broker)
        self._container = Container(self._handler)
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None
        self.port = 0

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> ServiceBusPeer:
        self._handler.attach_to(self._container)
        acceptor = self._listen(0)
        self._handler.acceptor = acceptor
        # The acceptor's selectable delegates to its listening socket: the only way to learn port 0.
        self.port = int(acceptor._selectable.getsockname()[1])
        self._thread = threading.Thread(target=self._run, name="servicebus-peer", daemon=True)
        self._thread.start()
        return self

    def _listen(self, port: int) -> Any:
        """Listen on ``port`` with a backlog a namespace's clients cannot overflow. Proton listens with
        a backlog of 10: 32 session receivers connecting at once (a worker accepting sessions) had
        their surplus SYNs dropped and resent a second later, which Service Bus never does.
        Listening again on the same socket only sets the backlog (the kernel caps it at somaxconn)."""
        acceptor = self._container.listen(f"{self._host}:{port}")
        acceptor._selectable.listen(LISTEN_BACKLOG)  # the selectable delegates to its socket
        return acceptor

    def _run(self) -> None:
        try:
            self._container.run()
        except BaseException as error:  # noqa: BLE001 -- a peer bug: fail the test, not only this thread
            _log.exception("The Service Bus test peer failed.")
            self._failure = error

    def _call(self, fn: Callable[[], Any]) -> Any:
        if self._failure is not None:
            raise PeerFailed(f"The Service Bus test peer failed: {self._failure!r}") from self._failure
        return self._handler.call(fn)

    def stop(self) -> None:
        if self._thread is None:
            return
        if self._thread.is_alive():
            self._handler.call(self._handler.stop)
            self._thread.join(timeout=10)
        self._thread = None
        if self._failure is not None:
            raise PeerFailed(f"The Service Bus test peer failed: {self._failure!r}") from self._failure

    def __enter__(self) -> ServiceBusPeer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def connection_string(self) -> str:
        return (
            f"Endpoint=sb://{self._host}:{self.port};SharedAccessKeyName=k;SharedAccessKey=v;"
            "UseDevelopmentEmulator=true"
        )

    # -- seeding -----------------------------------------------------------------------------

    def send(
        self,
        entity: str,
        body: bytes | str,
        *,
        message_id: str | None = None,
        session_id: str | None = None,
        application_properties: Mapping[str, Any] | None = None,
    ) -> int:
        """Put a message on ``entity`` as the SDK would send it; return its sequence number."""
        message = proton.Message(
            body=body.encode() if isinstance(body, str) else body,
            inferred=True,  # a data section, as the SDK sends bytes and str bodies
            id=message_id,
            group_id=session_id,
            properties=dict(application_properties or {}),
        )

        def store() -> int:
            sequence_number, queues = self._broker.store(entity, message, time.time())
            self._handler.dispatch(queues)
            return sequence_number

        return int(self._call(store))

    # -- faults --------------------------------------------------------------------------------

    def drop_connections(self) -> int:
        """Close every client connection without an AMQP close; their locks are lost at once."""
        return int(self._call(self._handler.drop_connections))

    def stall(self, seconds: float) -> None:
        """The broker answers nothing for ``seconds`` (its loop busy): returns once it is over."""
        self._call(lambda: time.sleep(seconds))

    def go_offline(self) -> int:
        """The broker becomes unreachable: stop listening (connections are refused) and drop every
        client connection (their locks go, as on Service Bus). Messages are kept. Returns how many
        connections were dropped; ``come_back`` listens again on the same port."""

        def offline() -> int:
            if self._handler.acceptor is not None:
                self._handler.acceptor.close()
                self._handler.acceptor = None
            return int(self._handler.drop_connections())

        return int(self._call(offline))

    def come_back(self) -> None:
        """Listen again on the same port (after ``go_offline``), with every message kept."""

        def online() -> None:
            if self._handler.acceptor is None:
                self._handler.acceptor = self._listen(self.port)

        self._call(online)

    def expire_lock(self, entity: str, message_id: str | None = None) -> int:
        """Expire the lock(s) on ``entity`` now (all, or the message's); return how many."""
        return int(self._call(lambda: self._handler.expire_locks(entity, message_id)))

    # -- inspection ----------------------------------------------------------------------------

    def messages(self, entity: str) -> list[MessageSnapshot]:
        """Every message ``entity`` holds (active, locked, deferred and scheduled), by sequence number."""
        return list(self._call(lambda: [_snapshot(s) for s in self._broker.receivable(entity).in_order()]))

    def dead_letters(self, entity: str) -> list[MessageSnapshot]:
        def read() -> list[MessageSnapshot]:
            return [_snapshot(s) for s in self._broker.dead_letter_of(entity).in_order()]

        return list(self._call(read))

    def _count(self, entity: str, *states: str) -> int:
        return sum(1 for snapshot in self.messages(entity) if snapshot.state in states)

    def active_count(self, entity: str) -> int:
        """Active messages, locked ones included (as Service Bus counts them)."""
        return self._count(entity, "active", "locked")

    def scheduled_count(self, entity: str) -> int:
        return self._count(entity, "scheduled")

    def deferred_count(self, entity: str) -> int:
        return self._count(entity, "deferred")

    def dead_letter_count(self, entity: str) -> int:
        return len(self.dead_letters(entity))
