"""The proton event handler: connections, link attaches, incoming transfers, the clock, faults.

Runs on the container's thread only; the peer's public methods reach it through ``call``.
"""

from __future__ import annotations

import logging
import queue
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import proton
from proton import Delivery, Handler, Link
from proton.reactor import ApplicationEvent, Container, EventInjector

from tests.servicebus_peer import codec, management
from tests.servicebus_peer.broker import Broker, EntityNotFound, SendRefused, entity_path
from tests.servicebus_peer.delivering import ClientConnection, Consumer, Deliveries, new_delivery
from tests.servicebus_peer.entities import Queue

_log = logging.getLogger(__name__)

TICK_S = 0.05
SESSION_FILTER = proton.symbol("com.microsoft:session-filter")
LOCKED_UNTIL_UTC = proton.symbol("com.microsoft:locked-until-utc")
OPERATION_TIMEOUT = proton.symbol("com.microsoft:timeout")
DEFAULT_ATTACH_TIMEOUT_S = 60.0
MAX_MESSAGE_SIZE = 256 * 1024  # the Standard tier's limit; the SDK sizes batches from it
SENDER_CREDIT = 1000
COMMAND = "servicebus_peer_command"


@dataclass(eq=False)
class WaitingSession:
    """A next-available session receiver whose attach waits for a session with messages."""

    consumer: Consumer
    deadline: float


def _map(data: proton.Data) -> dict[Any, Any]:
    data.rewind()
    if data.next() is None:
        return {}
    value = data.get_object()
    return value if isinstance(value, dict) else {}


def _is_request_node(path: str) -> bool:
    """``$cbs`` and ``<entity>/$management`` answer requests instead of holding messages."""
    return path == "$cbs" or path.endswith(management.MANAGEMENT_SUFFIX.lower())


def _refuse(link: Link, name: str, description: str) -> None:
    """Service Bus answers a refused attach with an attach naming no entity, then a detach with the error.

    The null terminus matters: the SDK's sender, seeing its link attached, would send first
    and report the detach as an unknown error instead of the entity's.
    """
    entity_end = link.source if link.is_sender else link.target
    entity_end.type = proton.Terminus.UNSPECIFIED
    link.open()
    link.condition = codec.condition(name, description)
    link.close()


class PeerHandler(Handler):
    def __init__(self, broker: Broker, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.broker = broker
        self._clock = clock
        self._clients: dict[proton.Connection, ClientConnection] = {}
        self._deliveries = Deliveries(clock)
        self._waiting: dict[Link, WaitingSession] = {}
        self._commands: queue.Queue[tuple[Callable[[], Any], Future[Any]]] = queue.Queue()
        self._injector = EventInjector()
        self._container: Container | None = None
        self._stopping = False
        self.acceptor: Any = None

    # -- the container and commands from other threads -----------------------------------------

    def attach_to(self, container: Container) -> None:
        self._container = container
        container.selectable(self._injector)

    def call(self, fn: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Run ``fn`` on the container's thread and return its result."""
        future: Future[Any] = Future()
        self._commands.put((fn, future))
        self._injector.trigger(ApplicationEvent(COMMAND))
        return future.result(timeout=timeout)

    def on_servicebus_peer_command(self, event: Any) -> None:
        while not self._commands.empty():
            fn, future = self._commands.get()
            try:
                future.set_result(fn())
            except Exception as error:  # noqa: BLE001 -- whatever it is, the calling thread raises it
                future.set_exception(error)

    def stop(self) -> None:
        self._stopping = True
        for client in list(self._clients.values()):
            client.connection.close()
        self._clients.clear()
        if self.acceptor is not None:
            self.acceptor.close()
        self._injector.close()
        if self._container is not None:
            self._container.stop()

    def on_reactor_init(self, event: Any) -> None:
        event.container.schedule(TICK_S, self)

    def on_timer_task(self, event: Any) -> None:
        if self._stopping:
            return
        self.tick()
        event.container.schedule(TICK_S, self)

    # -- connections and sessions ----------------------------------------------------------------

    def on_connection_bound(self, event: Any) -> None:
        sasl = event.transport.sasl()
        sasl.allowed_mechs("ANONYMOUS")

    def on_connection_remote_open(self, event: Any) -> None:
        connection = event.connection
        connection.container = "servicebus-test-peer"
        connection.open()
        self._clients[connection] = ClientConnection(connection)

    def on_session_remote_open(self, event: Any) -> None:
        event.session.open()

    def on_session_remote_close(self, event: Any) -> None:
        event.session.close()

    def on_connection_remote_close(self, event: Any) -> None:
        client = self._clients.get(event.connection)
        if client is not None:
            client.closed_by_client = True
            self.forget_client(client, abrupt=False)
        event.connection.close()

    def on_transport_closed(self, event: Any) -> None:
        client = self._clients.get(event.connection) if event.connection is not None else None
        if client is not None:
            self.forget_client(client, abrupt=not client.closed_by_client)

    def forget_client(self, client: ClientConnection, *, abrupt: bool) -> None:
        """The client is gone. Abruptly: its message locks go too (Microsoft's documented rule)."""
        self._clients.pop(client.connection, None)
        for link, consumer in list(self._deliveries.consumers.items()):
            if consumer.client is client:
                self._deliveries.drop(link)
        for link, waiting in list(self._waiting.items()):
            if waiting.consumer.client is client:
                del self._waiting[link]
        if abrupt:
            for q in self.broker.queues():
                q.lose_locks_of(client)
        self._deliveries.dispatch()

    def drop_connections(self) -> int:
        clients = list(self._clients.values())
        for client in clients:
            self.forget_client(client, abrupt=True)
            transport = client.connection.transport
            if transport is not None:
                transport.close_tail()
                transport.close_head()
        return len(clients)

    # -- links ---------------------------------------------------------------------------------

    def on_link_remote_open(self, event: Any) -> None:
        link = event.link
        link.source.copy(link.remote_source)
        link.target.copy(link.remote_target)
        link.snd_settle_mode = link.remote_snd_settle_mode
        link.rcv_settle_mode = link.remote_rcv_settle_mode
        client = self._clients.get(event.connection)
        if client is None:  # dropped while the attach was in flight
            return
        address = link.remote_source.address if link.is_sender else link.remote_target.address
        path = entity_path(address or "")
        if _is_request_node(path):
            self._open_request_response(link, client, path)
        elif link.is_receiver:
            self._open_entity_receiver(link, path)
        else:
            self._open_consumer(link, client, path)

    def _open_request_response(self, link: Link, client: ClientConnection, path: str) -> None:
        link.open()
        if link.is_sender:
            client.reply_links[path] = link
        else:
            link.flow(SENDER_CREDIT)

    def _open_entity_receiver(self, link: Link, path: str) -> None:
        if not self.broker.is_sendable(path):
            _refuse(link, "amqp:not-found", f"The messaging entity '{path}' could not be found.")
            return
        link.max_message_size = MAX_MESSAGE_SIZE
        link.open()
        link.flow(SENDER_CREDIT)

    def _open_consumer(self, link: Link, client: ClientConnection, path: str) -> None:
        try:
            q = self.broker.receivable(path)
        except EntityNotFound as error:
            _refuse(link, "amqp:not-found", str(error))
            return
        filters = _map(link.remote_source.filter)
        receive_and_delete = link.remote_snd_settle_mode == Link.SND_SETTLED
        consumer = Consumer(link, q, client, receive_and_delete)
        if SESSION_FILTER not in filters:
            if q.requires_session:
                _refuse(link, "amqp:not-allowed", f"The entity '{path}' requires a session receiver.")
                return
            link.open()
            self._deliveries.add(consumer)
            return
        if not q.requires_session:
            _refuse(link, "amqp:not-allowed", f"The entity '{path}' does not have sessions.")
            return
        session_id = filters[SESSION_FILTER]
        if session_id is None:
            timeout_ms = (link.remote_properties or {}).get(OPERATION_TIMEOUT)
            timeout_s = DEFAULT_ATTACH_TIMEOUT_S if timeout_ms is None else int(timeout_ms) / 1000
            self._waiting[link] = WaitingSession(consumer, self._clock() + timeout_s)
            self._try_waiting_sessions()
            return
        self._open_session_consumer(consumer, str(session_id))

    def _open_session_consumer(self, consumer: Consumer, session_id: str) -> None:
        link = consumer.link
        info = consumer.queue.lock_session(session_id, consumer, self._clock())
        if info is None:
            description = f"The session '{session_id}' is locked by another receiver."
            _refuse(link, "com.microsoft:session-cannot-be-locked", description)
            return
        consumer.session_id = session_id
        link.source.filter.clear()
        link.source.filter.put_object({SESSION_FILTER: session_id})
        link.properties = {LOCKED_UNTIL_UTC: codec.dotnet_ticks(info.locked_until)}
        link.open()
        self._deliveries.add(consumer)

    def _try_waiting_sessions(self) -> None:
        now = self._clock()
        for link, waiting in list(self._waiting.items()):
            session_id = waiting.consumer.queue.next_available_session()
            if session_id is not None:
                del self._waiting[link]
                self._open_session_consumer(waiting.consumer, session_id)
            elif waiting.deadline <= now:
                del self._waiting[link]
                _refuse(link, "com.microsoft:timeout", "No session became available in time.")

    def on_link_remote_close(self, event: Any) -> None:
        link = event.link
        self._waiting.pop(link, None)
        if self._deliveries.drop(link) is not None:
            self._deliveries.dispatch()
        link.close()

    def on_link_flow(self, event: Any) -> None:
        consumer = self._deliveries.consumers.get(event.link)
        if consumer is not None:
            self._deliveries.feed(consumer)

    # -- deliveries ----------------------------------------------------------------------------

    def on_delivery(self, event: Any) -> None:
        delivery = event.delivery
        if event.link.is_receiver:
            self._incoming(event.link, delivery)
        else:
            self._deliveries.on_disposition(delivery)

    def _incoming(self, link: Link, delivery: Delivery) -> None:
        if not delivery.readable or delivery.partial:
            return
        encoded = link.recv(delivery.pending)
        link.advance()
        path = entity_path(link.remote_target.address or "")
        client = self._clients.get(link.connection)
        if _is_request_node(path):
            self._request(client, path, codec.decode(encoded))
            delivery.update(Delivery.ACCEPTED)
        else:
            self._store(path, encoded, delivery)
        delivery.settle()
        if link.credit < SENDER_CREDIT // 2:
            link.flow(SENDER_CREDIT - link.credit)

    def _store(self, path: str, encoded: bytes, delivery: Delivery) -> None:
        messages = [codec.decode(part) for part in codec.split_batch(encoded) or [encoded]]
        now = self._clock()
        try:
            for message in messages:
                self.broker.validate(path, message)
            targets: list[Queue] = []
            for message in messages:
                targets.extend(self.broker.store(path, message, now)[1])
        except (EntityNotFound, SendRefused) as error:
            name = "amqp:not-found" if isinstance(error, EntityNotFound) else "amqp:not-allowed"
            delivery.local.condition = codec.condition(name, str(error))
            delivery.update(Delivery.REJECTED)
            return
        delivery.update(Delivery.ACCEPTED)
        self._deliveries.dispatch(targets)

    def _request(self, client: ClientConnection | None, path: str, request: proton.Message) -> None:
        if client is None:
            return
        if path == "$cbs":
            properties = {"status-code": 200, "status-description": "OK"}
            reply = proton.Message(correlation_id=request.id, properties=properties)
        else:
            outcome = management.execute(self.broker, path, request, client, self._clock())
            self._deliveries.settled_elsewhere(outcome.settled_tokens)
            reply = management.reply_message(request, outcome)
        reply_link = client.reply_links.get(
            entity_path(str(request.reply_to or path))
        ) or client.reply_links.get(path)
        if reply_link is None:
            _log.warning("No reply link for %s on this connection.", path)
            return
        delivery = new_delivery(reply_link, uuid.uuid4().bytes)
        reply_link.send(reply.encode())
        reply_link.advance()
        if reply_link.snd_settle_mode == Link.SND_SETTLED:
            delivery.settle()
        self._deliveries.dispatch()

    # -- the clock -----------------------------------------------------------------------------

    def tick(self) -> None:
        now = self._clock()
        for q in list(self.broker.queues()):
            for session_id in q.expired_sessions(now):
                self._session_lock_expired(q, session_id)
            q.expire_locks(now)
            q.enqueue_due(now)
        self._try_waiting_sessions()
        self._deliveries.dispatch()

    def _session_lock_expired(self, q: Queue, session_id: str) -> None:
        for link, consumer in list(self._deliveries.consumers.items()):
            if consumer.queue is q and consumer.session_id == session_id:
                self._deliveries.drop(link)
                link.condition = codec.condition(
                    "com.microsoft:session-lock-lost", "The session lock expired."
                )
                link.close()
        q.unlock_session(session_id)

    def dispatch(self, queues: list[Queue]) -> None:
        self._deliveries.dispatch(queues)

    def expire_locks(self, address: str, message_id: str | None) -> int:
        q = self.broker.receivable(address)
        expired = q.expire_locks(self._clock(), force=True, message_id=message_id)
        self._deliveries.dispatch([q])
        return expired
