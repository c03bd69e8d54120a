"""Azure Service Bus behind the Bus protocol, on the async ``azure-servicebus`` SDK.

Receiving never blocks the worker on the network (``receiving``, ``sessions``). Settlement errors
that mean "this message will be (or was) redelivered" become LockLostError, so the runner never
settles a message twice; the inbox absorbs the redelivery.

Delayed retries: with sessions, the message is held in place (``sessions``), so the client's
later messages wait for it. Without sessions there is no per-client order to keep (per-record
order is the journal's), and a scheduled copy is cheaper than a held lock: the copy is scheduled,
then the original completed. The sender's management calls (schedule, cancel) are serialised and
retried: the SDK fails concurrent first calls on a fresh sender ("Handler failed: 'NoneType'
object has no attribute 'client_ready_async'", a race seen on azure-servicebus 7.x;
not pinned by a test because it does not fail every time).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from azure.core.exceptions import AzureError, ClientAuthenticationError, ServiceRequestError
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusReceiver, ServiceBusSender
from azure.servicebus.aio.management import ServiceBusAdministrationClient
from azure.servicebus.exceptions import ServiceBusError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_exponential_jitter

from worker.buses.azure.client import make_client
from worker.buses.azure.convert import (
    Message,
    lock_left_s,
    outgoing_properties,
    send_in_batches,
    to_delivery,
    to_service_bus_message,
)
from worker.buses.azure.dead_letters import DeadLetters
from worker.buses.azure.errors import (
    SettlementUnconfirmedError,
    StatsUnavailableError,
    handler_failures_as_connection_loss,
    lock_errors,
    reconnecting,
)
from worker.buses.azure.fan import receivers
from worker.buses.azure.receiving import Lock, Receiving
from worker.buses.azure.sessions import SessionReceiving
from worker.buses.azure.settling import Action
from worker.buses.base import BusStats, DeadLetter, Delivery, LockLostError, OutgoingMessage
from worker.db import Journal
from worker.logging import get_logger
from worker.settings import AzureBusSettings

log = get_logger()

RETRY_FOR_PROPERTY = "cwi-retry-for"  # on a topic: the subscription a delayed retry is meant for
_REASON_MAX = 64  # as the local bus stores it
_DESCRIPTION_MAX = 4096  # Service Bus caps the dead-letter description
_REASON_SCAN = 1000  # dead letters peeked to count reasons in stats()
_SENDER_ATTEMPTS = 4


def _lock_of(delivery: Delivery) -> Lock:
    lock = delivery.lock
    if not isinstance(lock, Lock):
        raise TypeError(f"message {delivery.message_id} was not received from this Service Bus adapter")
    return lock


def _no_journal(journal: Journal | None) -> None:
    if journal is not None:
        raise TypeError("Service Bus settles outside the database: commit the journal first")


class AzureBus:
    """The Bus protocol on a Service Bus queue or topic subscription, with or without sessions."""

    journals = False  # the runner commits a message's journal just before settling it

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
        prefetch: int = 0,
    ) -> None:
        self.lock_duration_s = lock_duration_s
        self.idle_probe_s = idle_probe_s
        self.settings = settings
        self.sessions = settings.servicebus_sessions
        retry = {"retry_total": retry_total, "retry_backoff_factor": retry_backoff_s}
        self._client, self._credential = make_client(settings, retry)
        self._sender: ServiceBusSender | None = None
        self._sender_calls = asyncio.Lock()
        self._lock_checked = False
        self._dead_letters = DeadLetters(self._receiver, self.publish, sessions=self.sessions)
        self._receiving: Receiving
        self._held: SessionReceiving | None = None
        if self.sessions:
            self._held = SessionReceiving(
                self._receiver,
                idle_s=settings.servicebus_session_idle_s,
                accept_wait_s=accept_wait_s,
                reconnect_s=settings.servicebus_reconnect_s,
                lock_duration_s=lambda: self.lock_duration_s,
            )
            self._receiving = self._held
        else:
            # Without sessions the SDK prefetches up to the worker's capacity, split between the
            # receivers (``fan``): messages arriving after a receive call returned stay buffered
            # (with prefetch 0 the SDK releases them, and the service sends them again), and a
            # receive finds a batch waiting.
            self._receiving = receivers(
                self._receiver,
                count=settings.servicebus_receivers,
                prefetch=prefetch,
                poll_s=poll_s,
                reconnect_s=settings.servicebus_reconnect_s,
            )

    def _receiver(self, prefetch_count: int = 0, **kwargs: Any) -> ServiceBusReceiver:
        s = self.settings
        kwargs["prefetch_count"] = prefetch_count
        if s.servicebus_queue:
            return self._client.get_queue_receiver(s.servicebus_queue, **kwargs)
        return self._client.get_subscription_receiver(
            str(s.servicebus_topic), str(s.servicebus_subscription), **kwargs
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
        missing entity show at start-up and the first message does not wait for connections (the
        SDK takes about half a second to open a link: it polls for it every 50 ms). An unreachable
        namespace is retried for CWI_SERVICEBUS_RECONNECT_S, as receiving does."""
        await asyncio.gather(self._open_sender(), self._receiving.open())

    async def _open_sender(self) -> None:
        async for attempt in reconnecting(self.settings.servicebus_reconnect_s, "open sender"):
            with attempt, handler_failures_as_connection_loss():
                async with self._sender_calls:
                    await self.sender.__aenter__()

    # --- publishing -----------------------------------------------------------------------------

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        """Send in batches, split where a batch is full; every message is checked before anything is sent."""
        if not messages:
            return
        converted = [to_service_bus_message(m, sessions=self.sessions) for m in messages]
        sender = self.sender
        # One call on the sender at a time: the worker publishes from many tasks at once (the
        # webhooks publisher's outbox) beside the scheduling of retries, and the SDK's sender
        # breaks when its link is opened or used concurrently.
        async with self._sender_calls:
            await send_in_batches(converted, sender.create_message_batch, sender.send_messages)

    # --- receiving ------------------------------------------------------------------------------

    def on_arrival(self, wake: Callable[[], None]) -> None:
        self._receiving.on_arrival(wake)

    async def receive(self, max_count: int, wait_s: float) -> list[Delivery]:
        if max_count <= 0:
            return []
        locks = await self._receiving.take(max_count, wait_s)
        if locks and not self._lock_checked:
            self._check_lock_duration(locks[0].message)
        return [
            to_delivery(lock.message, lock, lock.properties, self._session_lock_ends(lock)) for lock in locks
        ]

    def _session_lock_ends(self, lock: Lock) -> float | None:
        """A session's messages are held by the session's lock, which runs from its last renewal: a
        message that waited to be handed out (the worker's slots full) has less of it left."""
        return None if lock.session is None else lock.session.renewed_at + self.lock_duration_s

    def _check_lock_duration(self, message: Message) -> None:
        """Renewals are paced by ``lock_duration_s``; if the entity's lock is shorter, follow it."""
        self._lock_checked = True
        left = lock_left_s(message)
        if left is not None and 1.0 < left < self.lock_duration_s * 0.8:
            log.warning(
                "the entity's lock duration is shorter than CWI_LOCK_DURATION_S; renewing sooner",
                lock_duration_s=self.lock_duration_s,
                observed_s=round(left, 1),
            )
            self.lock_duration_s = left

    # --- settling -------------------------------------------------------------------------------

    async def _settle(self, delivery: Delivery, action: Action | None) -> None:
        """Through the receiving side's settler (``None``: complete, which it may batch)."""
        lock = _lock_of(delivery)
        lost = True
        try:
            with lock_errors(delivery.message_id):
                await self._receiving.settle(lock, action)
            lost = False
        finally:
            self._receiving.settled(lock, lost=lost)

    async def complete(self, delivery: Delivery, journal: Journal | None = None) -> None:
        _no_journal(journal)
        await self._settle(delivery, None)

    async def abandon(self, delivery: Delivery, journal: Journal | None = None) -> None:
        _no_journal(journal)
        await self._settle(delivery, _abandon)

    async def dead_letter(
        self, delivery: Delivery, reason: str, description: str, journal: Journal | None = None
    ) -> None:
        _no_journal(journal)
        reason, description = reason[:_REASON_MAX], description[:_DESCRIPTION_MAX]

        async def dead_letter(receiver: ServiceBusReceiver, message: Message) -> None:
            await receiver.dead_letter_message(message, reason=reason, error_description=description)

        await self._settle(delivery, dead_letter)

    async def renew_lock(self, delivery: Delivery) -> None:
        lock = _lock_of(delivery)
        with lock_errors(delivery.message_id):
            await self._receiving.renew(lock)

    async def reschedule(
        self,
        delivery: Delivery,
        delay_s: float,
        properties: Mapping[str, Any],
        journal: Journal | None = None,
    ) -> None:
        """With sessions: hold the message in place until it is due. Without: schedule a copy (new
        transport id, same body), then complete the original; if the original's lock turns out to
        be lost, the copy is cancelled (the original comes back by itself).

        On a topic the copy goes to every subscription; it carries ``cwi-retry-for`` (this
        subscription's name) so that the others can filter it out with a rule.
        """
        _no_journal(journal)
        lock = _lock_of(delivery)
        if self._held is not None and lock.session is not None:
            lost = True
            try:
                with lock_errors(delivery.message_id):
                    await self._receiving.renew(lock)  # still ours? (and a fresh lock to start from)
                lost = False
            finally:
                if lost:
                    self._receiving.settled(lock, lost=True)
            self._held.hold(lock, delay_s, dict(properties))
            return
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
        [sequence_number] = await self._sender_call(lambda s: s.schedule_messages(copy, when))
        try:
            await self.complete(delivery)
        except SettlementUnconfirmedError:
            raise  # it may have applied: keep the copy, the inbox absorbs a double
        except LockLostError:
            await self._cancel_scheduled(sequence_number, delivery.message_id)
            raise

    async def _sender_call(self, call: Callable[[ServiceBusSender], Awaitable[Any]]) -> Any:
        """One management call on the sender at a time, retried on the SDK's handler errors."""
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(ServiceBusError),
            wait=wait_exponential_jitter(multiplier=0.05, max=2.0, jitter=0.05),
            stop=stop_after_attempt(_SENDER_ATTEMPTS),
            reraise=True,
        )
        async with self._sender_calls:
            async for attempt in retrying:
                with attempt:
                    return await call(self.sender)
        raise AssertionError("unreachable: tenacity reraises")

    async def _cancel_scheduled(self, sequence_number: int, message_id: str) -> None:
        try:
            await self._sender_call(lambda s: s.cancel_scheduled_messages(sequence_number))
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
            status = getattr(exc, "status_code", None)
            if isinstance(exc, ClientAuthenticationError) or status in (401, 403):
                why = "these credentials have no Manage rights on the namespace (counts need them)"
            elif isinstance(exc, ServiceRequestError | OSError | TimeoutError):
                why = "the namespace's management endpoint cannot be reached"
            else:
                why = "the management endpoint refused the request"
            raise StatsUnavailableError(f"{why}: {detail}") from exc

    def _admin_client(self) -> ServiceBusAdministrationClient:
        options: dict[str, Any] = {"retry_total": 1, "connection_timeout": 5, "read_timeout": 10}
        conn = self.settings.connection_string
        if conn is not None:
            return ServiceBusAdministrationClient.from_connection_string(conn, **options)
        assert self._credential is not None
        return ServiceBusAdministrationClient(
            str(self.settings.servicebus_namespace), self._credential, **options
        )

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        return await self._dead_letters.dead_letters(limit)

    async def find_dead_letter(self, message_id: str) -> DeadLetter | None:
        return await self._dead_letters.find_dead_letter(message_id)

    async def holds_message(self, message_id: str, session_id: str | None) -> bool | None:
        return await self._dead_letters.holds_message(message_id, session_id)

    async def resend_dead_letter(
        self,
        sequence_number: int,
        body: bytes,
        properties: Mapping[str, Any],
        *,
        message_id: str | None = None,
        sent: Callable[[], None] | None = None,
    ) -> bool:
        return await self._dead_letters.resend_dead_letter(
            sequence_number, body, properties, message_id=message_id, sent=sent
        )

    async def purge_dead_letter(self, sequence_number: int) -> bool:
        return await self._dead_letters.purge_dead_letter(sequence_number)

    async def close(self) -> None:
        """Close receivers and sender side by side: each SDK handler takes up to a second to close."""
        closing = [self._receiving.close(), self._dead_letters.close()]
        if self._sender is not None:
            closing.append(self._sender.close())
        await asyncio.gather(*closing)
        await self._client.close()
        if self._credential is not None:
            await self._credential.close()


async def _abandon(receiver: ServiceBusReceiver, message: Message) -> None:
    await receiver.abandon_message(message)


def _count(value: int | None) -> int:
    return int(value or 0)
