"""Azure Service Bus behind the Bus protocol, on the async ``azure-servicebus`` SDK.

Receiving never blocks the worker on the network: a background fetch asks the service for at most
as many messages as the caller could start when it asked (``max_count``), and ``receive`` hands out
what has arrived. Prefetch stays 0: the lock clock starts when the service sends a message, so a
message may only be fetched once a slot is free to process it.

With sessions, each accepted session gets its own receiver (the SDK binds a receiver to one
session); several sessions are in flight at once, one message at a time within each: a session's
next message is fetched only after the previous one is settled, and a session with nothing more to
give within ``session_idle_s`` is let go so that other workers may take it.

Settlement errors that mean "this message will be (or was) redelivered" become LockLostError, so
the runner never settles a message twice; the inbox absorbs the redelivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import AzureError
from azure.servicebus import (
    NEXT_AVAILABLE_SESSION,
    ServiceBusMessage,
    ServiceBusMessageBatch,
    ServiceBusReceivedMessage,
    ServiceBusSubQueue,
)
from azure.servicebus.aio import ServiceBusClient, ServiceBusReceiver, ServiceBusSender
from azure.servicebus.aio.management import ServiceBusAdministrationClient
from azure.servicebus.amqp import AmqpMessageBodyType
from azure.servicebus.exceptions import (
    MessageLockLostError,
    MessageSizeExceededError,
    OperationTimeoutError,
    ServiceBusCommunicationError,
    ServiceBusConnectionError,
    ServiceBusError,
    ServiceBusServerBusyError,
    SessionCannotBeLockedError,
    SessionLockLostError,
)
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_delay
from tenacity.wait import wait_exponential_jitter

from worker.buses.base import (
    DEAD_LETTER_PROPERTIES,
    BusStats,
    BusStatsUnavailable,
    DeadLetter,
    Delivery,
    LockLostError,
    OutgoingMessage,
)
from worker.logging import get_logger
from worker.settings import AzureBusSettings

log = get_logger()

Message = ServiceBusReceivedMessage

# Errors after which the SDK reconnects on the next call: receive backs off and tries again.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    ServiceBusConnectionError,
    ServiceBusCommunicationError,
    ServiceBusServerBusyError,
    OperationTimeoutError,
)
_NO_SESSION_ERRORS = (OperationTimeoutError, SessionCannotBeLockedError)

RETRY_FOR_PROPERTY = "cwi-retry-for"  # on a topic: the subscription a delayed retry is meant for
_MIN_LOCK_LEFT_S = 1.0  # a buffered message with less lock left than this is not handed out
_REASON_MAX = 64  # as the local bus stores it
_DESCRIPTION_MAX = 4096  # Service Bus caps the dead-letter description
_REASON_SCAN = 1000  # dead letters peeked to count reasons in stats()
_MIN_ACCEPT_S = 0.25  # a "no session available" answer is not asked again sooner than this
_MAX_PARALLEL_ACCEPTS = 4  # each accept opens a connection: ramp up, do not stampede
_SCAN_BATCH = 100


class StatsUnavailableError(BusStatsUnavailable):
    """Counts cannot be read (no Manage rights, or no management endpoint); the message says why."""


class DeadLetterLockedError(Exception):
    """The dead letter is there but another receiver holds its lock for now."""


class SettlementUnconfirmedError(LockLostError):
    """The connection failed during settlement: if the settlement did not apply, it is redelivered."""


# --- messages -----------------------------------------------------------------------------------

# Not bytes: the SDK decodes bytes values as UTF-8 on send (and fails on anything else).
_PROPERTY_TYPES = (str, int, float, bool, uuid.UUID, dt.datetime)


def outgoing_properties(properties: Mapping[str, Any]) -> dict[str | bytes, Any]:
    """Application properties; Service Bus carries only simple AMQP values, so anything else is refused."""
    result: dict[str | bytes, Any] = {}
    for key, value in properties.items():
        if value is not None and not isinstance(value, _PROPERTY_TYPES):
            raise TypeError(f"application property {key!r} must be a string, number, boolean or time")
        result[key] = value
    return result


def to_service_bus_message(message: OutgoingMessage, *, sessions: bool = False) -> ServiceBusMessage:
    if sessions and not message.session_id:
        raise ValueError(f"message {message.message_id} has no session id (the client id); sessions need one")
    scheduled = message.scheduled_at
    if scheduled is not None and scheduled.tzinfo is None:
        raise ValueError("naive datetime given as a schedule time")
    return ServiceBusMessage(
        body=message.body,
        message_id=message.message_id,
        session_id=message.session_id,
        application_properties=outgoing_properties(message.properties),
        scheduled_enqueue_time_utc=None if scheduled is None else scheduled.astimezone(dt.UTC),
    )


def body_bytes(message: ServiceBusReceivedMessage) -> bytes:
    """The body as bytes: data sections joined; a value body (another publisher's) as UTF-8 text."""
    body = message.body
    if message.body_type == AmqpMessageBodyType.DATA:
        return body if isinstance(body, bytes) else b"".join(body)
    if isinstance(body, bytes):
        return body
    return str(body).encode("utf-8")


def _text(value: Any) -> Any:
    """The SDK returns received strings as bytes; binary that is not UTF-8 stays bytes."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value
    return value


def incoming_properties(properties: Mapping[str | bytes, Any] | None) -> dict[str, Any]:
    return {str(_text(k)): _text(v) for k, v in (properties or {}).items()}


def _message_id(message: ServiceBusReceivedMessage) -> str:
    return str(message.message_id or f"seq-{message.sequence_number}")


def _enqueued_at(message: ServiceBusReceivedMessage) -> dt.datetime:
    return message.enqueued_time_utc or dt.datetime.now(dt.UTC)


def to_delivery(message: ServiceBusReceivedMessage, lock: Any) -> Delivery:
    """A Delivery; its count includes this delivery (the AMQP header counts earlier ones), as locally."""
    return Delivery(
        body=body_bytes(message),
        message_id=_message_id(message),
        delivery_count=(message.delivery_count or 0) + 1,
        enqueued_at=_enqueued_at(message),
        session_id=message.session_id,
        properties=incoming_properties(message.application_properties),
        lock=lock,
    )


# Service Bus keeps the dead-letter reason and description among the application properties.
_DEAD_LETTER_PROPERTIES = frozenset({"DeadLetterReason", "DeadLetterErrorDescription"})


def to_dead_letter(message: ServiceBusReceivedMessage) -> DeadLetter:
    properties = incoming_properties(message.application_properties)
    return DeadLetter(
        message_id=_message_id(message),
        body=body_bytes(message),
        session_id=message.session_id,
        properties={k: v for k, v in properties.items() if k not in _DEAD_LETTER_PROPERTIES},
        reason=message.dead_letter_reason or "",
        description=message.dead_letter_error_description or "",
        delivery_count=message.delivery_count or 0,
        enqueued_at=_enqueued_at(message),
        dead_lettered_at=None,  # Service Bus does not record it on the message
        sequence_number=int(message.sequence_number or 0),
    )


async def send_in_batches(
    messages: Sequence[ServiceBusMessage],
    new_batch: Callable[[], Awaitable[ServiceBusMessageBatch]],
    send: Callable[[ServiceBusMessageBatch], Awaitable[None]],
) -> int:
    """Send ``messages`` in as few batches as fit, in order; returns how many batches were sent."""
    sent = 0
    batch = await new_batch()
    for message in messages:
        try:
            batch.add_message(message)
            continue
        except MessageSizeExceededError:
            if len(batch) == 0:
                raise _too_large(message, batch) from None
        await send(batch)
        sent += 1
        batch = await new_batch()
        try:
            batch.add_message(message)
        except MessageSizeExceededError:
            raise _too_large(message, batch) from None
    if len(batch):
        await send(batch)
        sent += 1
    return sent


def _too_large(message: ServiceBusMessage, batch: ServiceBusMessageBatch) -> ValueError:
    return ValueError(
        f"message {message.message_id} does not fit in a batch ({batch.max_size_in_bytes} bytes)"
    )


def _lock_left_s(message: ServiceBusReceivedMessage) -> float | None:
    until = message.locked_until_utc
    return None if until is None else (until - dt.datetime.now(dt.UTC)).total_seconds()


# --- settlement errors --------------------------------------------------------------------------


@contextlib.contextmanager
def lock_errors(message_id: str) -> Iterator[None]:
    """Translate the SDK's "this lock is gone" errors into LockLostError (the runner's contract)."""
    try:
        yield
    except (MessageLockLostError, SessionLockLostError) as exc:
        raise LockLostError(f"lock on message {message_id} expired or was taken over") from exc
    except ValueError as exc:
        # MessageAlreadySettled, or the receiver was shut down (reconnect, session released).
        raise LockLostError(f"message {message_id} can no longer be settled: {exc}") from exc
    except ServiceBusError as exc:
        # A lost connection, or the SDK failing to reopen one (concurrent settlements after a drop
        # race in its management-link fallback): whether it applied is unknown, so let it go.
        raise SettlementUnconfirmedError(
            f"settling message {message_id} failed ({exc.__class__.__name__}); "
            "it is redelivered unless it applied"
        ) from exc


def _reconnecting(reconnect_s: float, what: str) -> AsyncRetrying:
    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            "service bus unreachable, retrying", operation=what, attempt=state.attempt_number, error=str(exc)
        )

    return AsyncRetrying(
        retry=retry_if_exception_type(TRANSIENT_ERRORS),
        wait=wait_exponential_jitter(multiplier=0.2, max=15.0, jitter=0.2),
        stop=stop_after_delay(reconnect_s),
        before_sleep=before_sleep,
        reraise=True,
    )


@contextlib.contextmanager
def handler_failures_as_connection_loss() -> Iterator[None]:
    """The SDK wraps its own internal errors in a bare ServiceBusError ("Handler failed: …") and
    shuts the handler down; after a dropped connection its reconnect races produce such errors.
    A fresh handler works, so receiving treats them as a lost connection and retries."""
    try:
        yield
    except ServiceBusError as exc:
        if type(exc) is not ServiceBusError:
            raise
        raise ServiceBusConnectionError(message=str(exc), error=exc) from exc


async def _close_quietly(receiver: ServiceBusReceiver) -> None:
    try:
        await receiver.close()
    except Exception as exc:  # noqa: BLE001 - closing is best effort; the service drops the link anyway
        log.debug("closing a receiver failed", error=str(exc))


# --- receiving ----------------------------------------------------------------------------------


@dataclass(eq=False)
class _Session:
    receiver: ServiceBusReceiver
    session_id: str
    renewed_at: float  # monotonic time the session lock was last granted
    ready: Message | None = None
    fetch: asyncio.Task[Message | None] | None = None
    busy: bool = False  # one of its messages is out, unsettled


@dataclass(eq=False)
class _Lock:
    receiver: ServiceBusReceiver
    message: Message
    session: _Session | None = field(default=None, repr=False)


class _Receiving(Protocol):
    async def open(self) -> None: ...

    async def take(self, max_count: int, wait_s: float) -> list[_Lock]: ...

    async def renew(self, lock: _Lock) -> None: ...

    def settled(self, lock: _Lock, *, lost: bool) -> None: ...

    async def close(self) -> None: ...


ReceiverFactory = Callable[..., ServiceBusReceiver]


class QueueReceiving:
    """A non-session entity: one receiver, one background fetch at a time, a small hand-out buffer."""

    def __init__(self, open_receiver: ReceiverFactory, *, poll_s: float, reconnect_s: float) -> None:
        self._open_receiver = open_receiver
        self._receiver: ServiceBusReceiver | None = None
        self._poll_s = poll_s
        self._reconnect_s = reconnect_s
        self._buffer: deque[Message] = deque()
        self._task: asyncio.Task[list[Message]] | None = None

    async def open(self) -> None:
        await self._opened()

    async def _opened(self) -> ServiceBusReceiver:
        """The receiver with its link up, (re)opened here rather than by receive_messages, whose
        short wait would also bound connecting, signing in and attaching, and keep timing out
        (after a dropped connection as well). A no-op while the link is up."""
        if self._receiver is None:
            self._receiver = self._open_receiver()
        await self._receiver.__aenter__()
        return self._receiver

    async def take(self, max_count: int, wait_s: float) -> list[_Lock]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(wait_s, 0.0)
        while True:
            self._collect()
            out = self._pop(max_count)
            if out and self._receiver is not None:
                return [_Lock(self._receiver, m) for m in out]
            if self._task is None:
                self._task = asyncio.create_task(self._fetch(max_count))
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            await asyncio.wait({self._task}, timeout=remaining)

    def _collect(self) -> None:
        if self._task is not None and self._task.done():
            task, self._task = self._task, None
            self._buffer.extend(task.result())  # raises when reconnecting gave up, or on bad credentials

    def _pop(self, max_count: int) -> list[Message]:
        out: list[Message] = []
        while self._buffer and len(out) < max_count:
            message = self._buffer.popleft()
            left = _lock_left_s(message)
            if left is not None and left < _MIN_LOCK_LEFT_S:
                log.warning("lock expired while buffered", transport_message_id=message.message_id)
                continue
            out.append(message)
        return out

    async def _fetch(self, max_count: int) -> list[Message]:
        async for attempt in _reconnecting(self._reconnect_s, "receive"):
            with attempt:
                try:
                    with handler_failures_as_connection_loss():
                        receiver = await self._opened()
                        return await receiver.receive_messages(
                            max_message_count=max_count, max_wait_time=self._poll_s
                        )
                except ServiceBusConnectionError:
                    await self._forget_receiver()  # the next attempt starts from a fresh one
                    raise
        raise AssertionError("unreachable: tenacity reraises")

    async def _forget_receiver(self) -> None:
        """Let a failed receiver go; messages it handed out settle through it (and lose their locks)."""
        receiver, self._receiver = self._receiver, None
        if receiver is not None:
            await _close_quietly(receiver)

    async def renew(self, lock: _Lock) -> None:
        await lock.receiver.renew_message_lock(lock.message)

    def settled(self, lock: _Lock, *, lost: bool) -> None:
        """Nothing to do: the receiver serves the next fetch regardless."""

    async def close(self) -> None:
        """Stop fetching, abandon what was never handed out, close the receiver.

        A fetch cancelled mid-call leaves what arrived in the SDK's buffer (it returns a batch
        without awaiting in between), and closing the receiver releases that buffer.
        """
        if self._task is not None:
            self._task.cancel()
            [fetched] = await asyncio.gather(self._task, return_exceptions=True)
            if isinstance(fetched, list):
                self._buffer.extend(fetched)
            self._task = None
        if self._receiver is not None:
            await asyncio.gather(
                *(self._receiver.abandon_message(m) for m in self._buffer), return_exceptions=True
            )
            self._buffer.clear()
            await _close_quietly(self._receiver)


class SessionReceiving:
    """A session entity: up to ``max_count`` sessions in flight, one message at a time in each."""

    def __init__(
        self,
        open_receiver: ReceiverFactory,
        *,
        idle_s: float,
        accept_wait_s: float,
        reconnect_s: float,
        lock_duration_s: Callable[[], float],
    ) -> None:
        self._open_receiver = open_receiver
        self._idle_s = idle_s
        self._accept_wait_s = accept_wait_s
        self._reconnect_s = reconnect_s
        self._lock_duration_s = lock_duration_s
        self._sessions: list[_Session] = []
        self._accepts: set[asyncio.Task[_Session | None]] = set()
        self._closing: set[asyncio.Task[None]] = set()
        self._found_none = False  # the last accept found no session: look with one receiver only

    async def open(self) -> None:
        """Nothing to open ahead: a session receiver exists only once a session is accepted."""

    async def take(self, max_count: int, wait_s: float) -> list[_Lock]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(wait_s, 0.0)
        while True:
            self._harvest()
            out = self._hand_out(max_count)
            self._start_accepts(max_count - len(out))
            remaining = deadline - loop.time()
            pending = self._pending()
            if out or remaining <= 0 or not pending:
                return out
            await asyncio.wait(pending, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)

    def _pending(self) -> set[asyncio.Future[Any]]:
        fetches = {s.fetch for s in self._sessions if s.fetch is not None}
        return {*fetches, *self._accepts}

    def _hand_out(self, max_count: int) -> list[_Lock]:
        out: list[_Lock] = []
        for session in self._sessions:
            if len(out) == max_count:
                break
            if session.ready is not None and not session.busy:
                out.append(_Lock(session.receiver, session.ready, session))
                session.ready, session.busy = None, True
        return out

    def _start_accepts(self, budget: int) -> None:
        """Accept more sessions while what could still arrive stays within what the caller can start."""
        waiting = sum(1 for s in self._sessions if not s.busy) + len(self._accepts)
        parallel = 1 if self._found_none else _MAX_PARALLEL_ACCEPTS
        wanted = min(budget - waiting, parallel - len(self._accepts))
        for _ in range(max(wanted, 0)):
            task = asyncio.create_task(self._accept())
            self._accepts.add(task)

    def _harvest(self) -> None:
        for session in list(self._sessions):
            if session.fetch is None or not session.fetch.done():
                continue
            task, session.fetch = session.fetch, None
            error = None if task.cancelled() else task.exception()
            if error is None and not task.cancelled() and (message := task.result()) is not None:
                session.ready = message
            else:
                self._drop(session, error)
        for accept in [t for t in self._accepts if t.done()]:
            self._accepts.discard(accept)
            accepted = accept.result()  # raises when reconnecting gave up, or on bad credentials
            self._found_none = accepted is None
            if accepted is not None:
                self._sessions.append(accepted)

    async def _accept(self) -> _Session | None:
        """The next available session with its first message, or None when no session has one."""
        started = time.monotonic()
        async for attempt in _reconnecting(self._reconnect_s, "accept session"):
            with attempt:
                accepted = await self._accept_once()
        if accepted is None:
            # Some peers answer "no session" at once: do not open a connection in a tight loop.
            await asyncio.sleep(max(0.0, _MIN_ACCEPT_S - (time.monotonic() - started)))
        return accepted

    async def _accept_once(self) -> _Session | None:
        receiver = self._open_receiver(session_id=NEXT_AVAILABLE_SESSION, max_wait_time=self._accept_wait_s)
        try:
            with handler_failures_as_connection_loss():
                messages = await receiver.receive_messages(
                    max_message_count=1, max_wait_time=self._accept_wait_s
                )
        except _NO_SESSION_ERRORS:
            messages = []
        except BaseException:
            await _close_quietly(receiver)
            raise
        if not messages:
            await _close_quietly(receiver)
            return None
        session_id = str(receiver.session.session_id)
        return _Session(receiver, session_id, renewed_at=time.monotonic(), ready=messages[0])

    async def _next(self, session: _Session) -> Message | None:
        """The session's next message; when it has none, let the session go at once, not at the next
        receive(): an idle link still holds credit, and a message the service sends on it then
        would come back with its delivery count raised when the receiver closes."""
        try:
            messages = await session.receiver.receive_messages(
                max_message_count=1, max_wait_time=self._idle_s
            )
        except BaseException:
            await _close_quietly(session.receiver)
            raise
        if not messages:
            await _close_quietly(session.receiver)
            return None
        # The runner renews from hand-out on; give it a nearly fresh session lock to start from.
        if time.monotonic() - session.renewed_at > self._lock_duration_s() / 10:
            await self._renew_session(session)
        return messages[0]

    async def _renew_session(self, session: _Session) -> None:
        await session.receiver.session.renew_lock()
        session.renewed_at = time.monotonic()

    async def renew(self, lock: _Lock) -> None:
        assert lock.session is not None
        await self._renew_session(lock.session)

    def settled(self, lock: _Lock, *, lost: bool) -> None:
        session = lock.session
        if session is None or session not in self._sessions:
            return
        session.busy = False
        if lost:
            self._drop(session, None)
        else:
            session.fetch = asyncio.create_task(self._next(session))

    def _drop(self, session: _Session, error: BaseException | None) -> None:
        """Forget the session (idle, lock or connection lost); its receiver closes in the background
        (again, harmlessly, if its fetch closed it already)."""
        if error is not None:
            log.warning("session receiver failed", session_id=session.session_id, error=str(error))
        self._sessions.remove(session)
        task = asyncio.create_task(_close_quietly(session.receiver))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        """Stop accepting, abandon what was never handed out, let every session go, all at once."""
        for accept in self._accepts:
            accept.cancel()
        sessions, self._sessions = self._sessions, []
        await asyncio.gather(*self._accepts, *(self._let_go(s) for s in sessions), return_exceptions=True)
        self._accepts.clear()
        await asyncio.gather(*self._closing, return_exceptions=True)

    @staticmethod
    async def _let_go(session: _Session) -> None:
        if session.fetch is not None:
            session.fetch.cancel()
            [fetched] = await asyncio.gather(session.fetch, return_exceptions=True)
            if isinstance(fetched, ServiceBusReceivedMessage):
                session.ready = fetched
        if session.ready is not None:
            with contextlib.suppress(Exception):
                await session.receiver.abandon_message(session.ready)
        await _close_quietly(session.receiver)


# --- the bus ------------------------------------------------------------------------------------


def _lock_of(delivery: Delivery) -> _Lock:
    lock = delivery.lock
    if not isinstance(lock, _Lock):
        raise TypeError(f"message {delivery.message_id} was not received from this Service Bus adapter")
    return lock


class AzureBus:
    """The Bus protocol on a Service Bus queue or topic subscription, with or without sessions."""

    def __init__(
        self,
        settings: AzureBusSettings,
        *,
        lock_duration_s: float = 60.0,
        retry_total: int = 3,
        retry_backoff_s: float = 0.8,
        poll_s: float = 5.0,
        accept_wait_s: float = 5.0,
        idle_probe_s: float = 3.0,
    ) -> None:
        self.lock_duration_s = lock_duration_s
        self.idle_probe_s = idle_probe_s
        self.settings = settings
        self.sessions = settings.servicebus_sessions
        retry = {"retry_total": retry_total, "retry_backoff_factor": retry_backoff_s}
        self._client, self._credential = _make_client(settings, retry)
        self._sender: ServiceBusSender | None = None
        self._dead_letter: ServiceBusReceiver | None = None
        self._dead_letter_lock = asyncio.Lock()
        self._lock_checked = False
        self._receiving: _Receiving
        if self.sessions:
            self._receiving = SessionReceiving(
                self._receiver,
                idle_s=settings.servicebus_session_idle_s,
                accept_wait_s=accept_wait_s,
                reconnect_s=settings.servicebus_reconnect_s,
                lock_duration_s=lambda: self.lock_duration_s,
            )
        else:
            self._receiving = QueueReceiving(
                self._receiver, poll_s=poll_s, reconnect_s=settings.servicebus_reconnect_s
            )

    def _receiver(self, **kwargs: Any) -> ServiceBusReceiver:
        s = self.settings
        if s.servicebus_queue:
            return self._client.get_queue_receiver(s.servicebus_queue, prefetch_count=0, **kwargs)
        return self._client.get_subscription_receiver(
            str(s.servicebus_topic), str(s.servicebus_subscription), prefetch_count=0, **kwargs
        )

    @property
    def sender(self) -> ServiceBusSender:
        if self._sender is None:
            s = self.settings
            if s.servicebus_queue:
                self._sender = self._client.get_queue_sender(s.servicebus_queue)
            else:
                self._sender = self._client.get_topic_sender(str(s.servicebus_topic))
        return self._sender

    async def open(self) -> None:
        """Connect the sender and (without sessions) the receiver now, so that bad credentials or a
        missing entity show at start-up and the first message does not wait for connections."""
        await asyncio.gather(self.sender.__aenter__(), self._receiving.open())

    # --- publishing -----------------------------------------------------------------------------

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        """Send in batches, split where a batch is full; every message is checked before anything is sent."""
        if not messages:
            return
        converted = [to_service_bus_message(m, sessions=self.sessions) for m in messages]
        sender = self.sender
        await send_in_batches(converted, sender.create_message_batch, sender.send_messages)

    # --- receiving ------------------------------------------------------------------------------

    async def receive(self, max_count: int, wait_s: float) -> list[Delivery]:
        if max_count <= 0:
            return []
        locks = await self._receiving.take(max_count, wait_s)
        if locks and not self._lock_checked:
            self._check_lock_duration(locks[0].message)
        return [to_delivery(lock.message, lock) for lock in locks]

    def _check_lock_duration(self, message: Message) -> None:
        """Renewals are paced by ``lock_duration_s``; if the entity's lock is shorter, follow it."""
        self._lock_checked = True
        left = _lock_left_s(message)
        if left is not None and 1.0 < left < self.lock_duration_s * 0.8:
            log.warning(
                "the entity's lock duration is shorter than CWI_LOCK_DURATION_S; renewing sooner",
                lock_duration_s=self.lock_duration_s,
                observed_s=round(left, 1),
            )
            self.lock_duration_s = left

    # --- settling -------------------------------------------------------------------------------

    async def _settle(
        self, delivery: Delivery, action: Callable[[ServiceBusReceiver, Message], Awaitable[None]]
    ) -> None:
        lock = _lock_of(delivery)
        lost = True
        try:
            with lock_errors(delivery.message_id):
                await action(lock.receiver, lock.message)
            lost = False
        finally:
            self._receiving.settled(lock, lost=lost)

    async def complete(self, delivery: Delivery) -> None:
        await self._settle(delivery, lambda r, m: r.complete_message(m))

    async def abandon(self, delivery: Delivery) -> None:
        await self._settle(delivery, lambda r, m: r.abandon_message(m))

    async def dead_letter(self, delivery: Delivery, reason: str, description: str) -> None:
        reason, description = reason[:_REASON_MAX], description[:_DESCRIPTION_MAX]
        await self._settle(
            delivery, lambda r, m: r.dead_letter_message(m, reason=reason, error_description=description)
        )

    async def renew_lock(self, delivery: Delivery) -> None:
        lock = _lock_of(delivery)
        with lock_errors(delivery.message_id):
            await self._receiving.renew(lock)

    async def reschedule(self, delivery: Delivery, delay_s: float, properties: Mapping[str, Any]) -> None:
        """Schedule a copy (new transport id, same body and session), then complete the original.

        If the original's lock turns out to be lost, the copy is cancelled: the original comes back
        by itself, and one live copy of a message is what "nothing doubled" asks for.

        On a topic the copy goes to every subscription; it carries ``cwi-retry-for`` (this
        subscription's name) so that the others can filter it out with a rule.
        """
        copy_properties = outgoing_properties(properties)
        if self.settings.servicebus_subscription:
            copy_properties[RETRY_FOR_PROPERTY] = self.settings.servicebus_subscription
        copy = ServiceBusMessage(
            body=delivery.body,
            message_id=str(uuid.uuid4()),
            session_id=delivery.session_id,
            application_properties=copy_properties,
        )
        when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=max(delay_s, 0.0))
        [sequence_number] = await self.sender.schedule_messages(copy, when)
        try:
            await self.complete(delivery)
        except SettlementUnconfirmedError:
            raise  # it may have applied: keep the copy, the inbox absorbs a double
        except LockLostError:
            await self._cancel_scheduled(sequence_number, delivery.message_id)
            raise

    async def _cancel_scheduled(self, sequence_number: int, message_id: str) -> None:
        try:
            await self.sender.cancel_scheduled_messages(sequence_number)
        except Exception as exc:  # noqa: BLE001 - the copy then runs too; the inbox makes that harmless
            log.warning("could not cancel a scheduled retry", transport_message_id=message_id, error=str(exc))

    # --- operators ------------------------------------------------------------------------------

    async def stats(self) -> BusStats:
        """Counts from the management endpoint (Manage rights needed); reasons from peeked dead letters."""
        active, scheduled, dead = await self._runtime_counts()
        by_reason: dict[str, int] = {}
        if dead:
            letters = await self.dead_letters(min(dead, _REASON_SCAN))
            for letter in letters:
                by_reason[letter.reason] = by_reason.get(letter.reason, 0) + 1
            if dead > len(letters):
                by_reason["(not inspected)"] = dead - len(letters)
        # Service Bus counts locked messages as active and does not say how many are locked.
        return BusStats(
            active=active,
            scheduled=scheduled,
            locked=0,
            dead_lettered=dead,
            dead_lettered_by_reason=by_reason,
        )

    async def _runtime_counts(self) -> tuple[int, int, int]:
        s = self.settings
        try:
            async with self._admin_client() as admin:
                if s.servicebus_queue:
                    queue = await admin.get_queue_runtime_properties(s.servicebus_queue)
                    return (
                        _count(queue.active_message_count),
                        _count(queue.scheduled_message_count),
                        _count(queue.dead_letter_message_count),
                    )
                topic, sub_name = str(s.servicebus_topic), str(s.servicebus_subscription)
                sub = await admin.get_subscription_runtime_properties(topic, sub_name)
                scheduled = (await admin.get_topic_runtime_properties(topic)).scheduled_message_count
                return (
                    _count(sub.active_message_count),
                    _count(scheduled),
                    _count(sub.dead_letter_message_count),
                )
        except (AzureError, OSError, TimeoutError) as exc:
            detail = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
            raise StatsUnavailableError(f"counts need Manage rights on the namespace: {detail}") from exc

    def _admin_client(self) -> ServiceBusAdministrationClient:
        options: dict[str, Any] = {"retry_total": 1, "connection_timeout": 5, "read_timeout": 10}
        conn = self.settings.connection_string
        if conn is not None:
            return ServiceBusAdministrationClient.from_connection_string(conn, **options)
        assert self._credential is not None
        return ServiceBusAdministrationClient(
            str(self.settings.servicebus_namespace), self._credential, **options
        )

    @contextlib.asynccontextmanager
    async def _dead_letter_receiver(self) -> AsyncIterator[ServiceBusReceiver]:
        """The dead-letter sub-queue's receiver, kept for the next operation unless this one fails.

        One operation at a time: concurrent peeks and scans on one receiver would mix their pages.
        """
        async with self._dead_letter_lock:
            if self._dead_letter is None:
                receiver = self._receiver(sub_queue=ServiceBusSubQueue.DEAD_LETTER)
                self._dead_letter = await receiver.__aenter__()  # see QueueReceiving._opened
            try:
                yield self._dead_letter
            except BaseException:
                receiver, self._dead_letter = self._dead_letter, None
                await _close_quietly(receiver)
                raise

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The oldest ``limit`` dead letters, peeked (not locked)."""
        found: list[ServiceBusReceivedMessage] = []
        async with self._dead_letter_receiver() as receiver:
            next_seq = 1  # not 0: the SDK reads 0 as "after the last message this receiver saw"
            while len(found) < limit:
                page = await receiver.peek_messages(limit - len(found), sequence_number=next_seq)
                if not page:
                    break
                found.extend(page)
                next_seq = int(page[-1].sequence_number or 0) + 1
        return [to_dead_letter(m) for m in found[:limit]]

    async def find_dead_letter(self, message_id: str) -> DeadLetter | None:
        async with self._dead_letter_receiver() as receiver:
            found = await _peek_for(receiver, message_id)
        return None if found is None else to_dead_letter(found)

    async def holds_message(self, message_id: str, session_id: str | None) -> bool | None:
        """Peeks the dead letters, then the queue (with sessions: the session's messages, which
        needs its lock for a moment; None if another receiver holds it)."""
        if await self.find_dead_letter(message_id) is not None:
            return True
        if not self.sessions:
            async with self._receiver() as receiver:
                return await _peek_for(receiver, message_id) is not None
        try:
            async with self._receiver(session_id=session_id, max_wait_time=1.0) as receiver:
                return await _peek_for(receiver, message_id) is not None
        except _NO_SESSION_ERRORS:
            return None

    async def resend_dead_letter(
        self,
        sequence_number: int,
        body: bytes,
        properties: Mapping[str, Any],
        *,
        message_id: str | None = None,
        sent: Callable[[], None] | None = None,
    ) -> bool:
        """Lock the dead letter, publish a replacement (same session), then remove the dead letter.

        Not atomic as on the local bus: a failure between the two leaves both; a rerun with the
        same ``message_id`` finds the copy (``holds_message``) and the inbox absorbs a double.
        """
        clean = {k: v for k, v in properties.items() if k not in DEAD_LETTER_PROPERTIES}

        async def resend(receiver: ServiceBusReceiver, letter: Message) -> None:
            new_id = message_id or str(uuid.uuid4())
            await self.publish([OutgoingMessage(body, new_id, letter.session_id, clean)])
            if sent is not None:
                sent()
            await receiver.complete_message(letter)

        return await self._with_dead_letter(sequence_number, resend)

    async def purge_dead_letter(self, sequence_number: int) -> bool:
        return await self._with_dead_letter(sequence_number, lambda r, m: r.complete_message(m))

    async def _with_dead_letter(
        self, sequence_number: int, action: Callable[[ServiceBusReceiver, Message], Awaitable[None]]
    ) -> bool:
        """Lock dead letters until the one with ``sequence_number`` turns up; act on it, let the rest go.

        Service Bus receives by sequence number only what was deferred, so this peeks to learn
        whether the message is there at all, then scans, one message per receive: a larger batch
        leaves link credit behind, and the next receive on this receiver then waits out its
        ``max_wait_time`` (seen with the SDK against the test peer). Operators act oldest first,
        so the target is usually the first message.
        """
        async with self._dead_letter_receiver() as receiver:
            peeked = await receiver.peek_messages(1, sequence_number=sequence_number)
            if not peeked or peeked[0].sequence_number != sequence_number:
                return False
            held: list[Message] = []
            try:
                while batch := await receiver.receive_messages(max_message_count=1, max_wait_time=2.0):
                    for message in batch:
                        if message.sequence_number == sequence_number:
                            await _acting_on(receiver, message, action)
                            return True
                        held.append(message)
                again = await receiver.peek_messages(1, sequence_number=sequence_number)
                if again and again[0].sequence_number == sequence_number:
                    raise DeadLetterLockedError(
                        f"dead letter {sequence_number} is locked by another receiver (an interrupted "
                        "operation?); try again once its lock expires"
                    )
                return False  # just settled by someone else
            finally:
                await asyncio.gather(*(receiver.abandon_message(m) for m in held), return_exceptions=True)

    async def close(self) -> None:
        """Close receivers and sender side by side: each SDK handler takes up to a second to close."""
        closing = [self._receiving.close()]
        if self._sender is not None:
            closing.append(self._sender.close())
        if self._dead_letter is not None:
            closing.append(_close_quietly(self._dead_letter))
        await asyncio.gather(*closing)
        await self._client.close()
        if self._credential is not None:
            await self._credential.close()


async def _acting_on(
    receiver: ServiceBusReceiver,
    message: Message,
    action: Callable[[ServiceBusReceiver, Message], Awaitable[None]],
) -> None:
    """Run ``action``; if it fails, let the dead letter go at once rather than when its lock expires."""
    try:
        await action(receiver, message)
    except BaseException:
        await asyncio.gather(receiver.abandon_message(message), return_exceptions=True)
        raise


async def _peek_for(receiver: ServiceBusReceiver, message_id: str) -> Message | None:
    """The first message with this transport id, peeking the whole entity in pages."""
    next_seq = 1  # not 0: the SDK reads 0 as "after the last message this receiver saw"
    while page := await receiver.peek_messages(_SCAN_BATCH, sequence_number=next_seq):
        for message in page:
            if _message_id(message) == message_id:
                return message
        next_seq = int(page[-1].sequence_number or 0) + 1
    return None


def _count(value: int | None) -> int:
    return int(value or 0)


def _make_client(
    settings: AzureBusSettings, retry: Mapping[str, Any]
) -> tuple[ServiceBusClient, AsyncTokenCredential | None]:
    conn = settings.connection_string
    if conn is not None:
        return ServiceBusClient.from_connection_string(conn, **retry), None
    from azure.identity.aio import DefaultAzureCredential  # only the namespace sign-in needs it

    credential = DefaultAzureCredential()
    return ServiceBusClient(str(settings.servicebus_namespace), credential, **retry), credential
