"""The bus protocol: what the pipeline runner needs from the local bus and Azure Service Bus alike."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from worker.db import Journal


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """A message to publish. ``session_id`` orders a client's messages (the client id)."""

    body: bytes
    message_id: str
    session_id: str | None = None
    properties: Mapping[str, Any] = field(default_factory=dict)
    scheduled_at: dt.datetime | None = None


@dataclass(slots=True)
class Delivery:
    """One received, locked message. ``lock`` is the adapter's own handle (token, SDK message)."""

    body: bytes
    message_id: str
    delivery_count: int
    enqueued_at: dt.datetime
    session_id: str | None
    properties: Mapping[str, Any]
    lock: Any = field(repr=False)
    lock_expires: float | None = None
    """When its lock runs out (``time.monotonic()``), where the bus says so: a Service Bus message
    may have waited in the SDK's prefetch buffer, its lock running since it arrived; the local
    bus's receive may reach a busy loop well after its statement locked the message."""


#: what Service Bus adds to a dead-lettered message's application properties (a resent copy drops them).
DEAD_LETTER_PROPERTIES = frozenset({"DeadLetterReason", "DeadLetterErrorDescription"})


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A dead-lettered message as operators see it."""

    message_id: str
    body: bytes
    session_id: str | None
    properties: Mapping[str, Any]
    reason: str
    description: str
    delivery_count: int
    enqueued_at: dt.datetime
    dead_lettered_at: dt.datetime | None
    sequence_number: int


@dataclass(frozen=True, slots=True)
class BusStats:
    active: int
    scheduled: int
    locked: int
    dead_lettered: int
    dead_lettered_by_reason: Mapping[str, int]


class BusStatsUnavailable(Exception):
    """The bus cannot report its counts with these credentials (e.g. no Manage rights)."""


class LockLostError(Exception):
    """The message's lock expired or was taken over: it will be (or was) redelivered."""


class DeadLetterQueue(Protocol):
    """What operators need from a bus's dead-letter queue (``worker.operators.dlq`` builds on it)."""

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The oldest ``limit`` dead letters, in sequence order, without locking them."""
        ...

    async def find_dead_letter(self, message_id: str) -> DeadLetter | None:
        """The dead letter with this transport message id, or None if there is none."""
        ...

    async def resend_dead_letter(
        self,
        sequence_number: int,
        body: bytes,
        properties: Mapping[str, Any],
        *,
        message_id: str | None = None,
        sent: Callable[[], None] | None = None,
    ) -> bool:
        """Publish ``body`` as a new message (``message_id``, default a fresh one; the dead letter's
        session), and only once that is acknowledged remove the dead letter. False if it is gone.

        ``sent`` is called between the two (tests stop the process there)."""
        ...

    async def purge_dead_letter(self, sequence_number: int) -> bool:
        """Remove the dead letter; False if it is already gone."""
        ...

    async def holds_message(self, message_id: str, session_id: str | None) -> bool | None:
        """Whether a message with this transport id is on the bus (active, scheduled or dead-lettered);
        None when the bus cannot tell (e.g. a session another receiver holds)."""
        ...


class Bus(DeadLetterQueue, Protocol):
    """Peek-lock queue with Service Bus semantics.

    Every settlement takes the message's ``journal``. A bus that lives in the worker's own database
    (``journals`` True) commits it in the settlement's transaction: one round trip, and never one
    without the other. Otherwise the caller commits the journal first and passes None.
    """

    lock_duration_s: float
    idle_probe_s: float
    """How long a receive must come back empty before the queue counts as idle (``--until-idle``)."""
    journals: bool

    async def open(self) -> None:
        """Connect now (the worker calls it at start): bad credentials or a missing entity show at
        once, and the first message does not wait for a connection. Idempotent."""
        ...

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None: ...

    async def receive(self, max_count: int, wait_s: float) -> list[Delivery]:
        """Up to ``max_count`` locked deliveries, waiting at most ``wait_s`` for the first."""
        ...

    def on_arrival(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` (on the event loop) whenever messages may have become ready for ``receive``
        that were not at its last call. The worker waits on it beside its messages finishing; a bus
        that never calls it is asked again when one finishes (or a quarter of a second later)."""
        ...

    async def complete(self, delivery: Delivery, journal: Journal | None = None) -> None: ...

    async def abandon(self, delivery: Delivery, journal: Journal | None = None) -> None: ...

    async def reschedule(
        self,
        delivery: Delivery,
        delay_s: float,
        properties: Mapping[str, Any],
        journal: Journal | None = None,
    ) -> None:
        """Deliver the message again after ``delay_s``, with ``properties``, keeping its place in its
        session: the session's later messages wait for it (per-client order)."""
        ...

    async def dead_letter(
        self, delivery: Delivery, reason: str, description: str, journal: Journal | None = None
    ) -> None: ...

    async def renew_lock(self, delivery: Delivery) -> None: ...

    async def stats(self) -> BusStats: ...

    async def close(self) -> None: ...
