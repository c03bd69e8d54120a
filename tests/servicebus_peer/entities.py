"""What one receivable entity holds (a queue, a topic subscription or a dead-letter sub-queue).

Plain state, no AMQP: messages by sequence number, message locks by lock token, sessions and
their locks. Every method takes ``now`` (epoch seconds) so the rules read the same whatever
clock drives them. The semantics are Microsoft's documented ones: an expired or abandoned lock
puts the message back with its delivery count + 1, and a message that reaches MaxDeliveryCount
moves to the dead-letter sub-queue with reason ``MaxDeliveryCountExceeded``.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import proton

DEAD_LETTER_SUFFIX = "/$DeadLetterQueue"
MAX_DELIVERY_COUNT_EXCEEDED = "MaxDeliveryCountExceeded"


class LockLost(Exception):
    """The lock token is unknown, expired or was lost with its connection."""


class SessionLockLost(Exception):
    """The session is not (or no longer) locked by the caller."""


class MessageNotFound(Exception):
    """No message with that sequence number is in the state the operation needs."""


class MessageState(enum.Enum):
    """Values of the ``x-opt-message-state`` annotation."""

    ACTIVE = 0
    DEFERRED = 1
    SCHEDULED = 2


@dataclass(frozen=True)
class EntityOptions:
    """A queue's or topic's settings; a topic's apply to each of its ``subscriptions``."""

    max_delivery_count: int = 10
    lock_duration_s: float = 60.0
    requires_session: bool = False
    subscriptions: tuple[str, ...] | list[str] = ()


@dataclass
class MessageLock:
    token: uuid.UUID
    locked_until: float
    owner: object
    """Who holds it (a connection, for drop_connections); opaque here."""


@dataclass
class StoredMessage:
    sequence_number: int
    message: proton.Message
    enqueued_time: float
    state: MessageState = MessageState.ACTIVE
    delivery_count: int = 0
    scheduled_time: float | None = None
    lock: MessageLock | None = None
    dead_letter_source: str | None = None
    session_id: str | None = field(init=False)
    """The message's group id, read once: every receive of a session entity compares it, and reading
    it through proton each time was most of the peer's time with thousands of messages queued."""

    def __post_init__(self) -> None:
        group = self.message.group_id
        self.session_id = None if group is None else str(group)


@dataclass
class SessionInfo:
    state: bytes | None = None
    owner: object | None = None
    locked_until: float = 0.0


@dataclass(eq=False)
class Queue:
    """A receivable entity. A non-dead-letter queue owns its dead-letter sub-queue."""

    name: str
    options: EntityOptions
    is_dead_letter: bool = False
    messages: dict[int, StoredMessage] = field(default_factory=dict)
    locks: dict[uuid.UUID, StoredMessage] = field(default_factory=dict)
    sessions: dict[str, SessionInfo] = field(default_factory=dict)
    dead_letter_queue: Queue | None = None
    _in_order: bool = field(default=True, repr=False)  # ``messages`` is in sequence-number order
    _by_session: dict[str, dict[int, StoredMessage]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self.is_dead_letter and self.dead_letter_queue is None:
            dlq_options = EntityOptions(lock_duration_s=self.options.lock_duration_s)
            self.dead_letter_queue = Queue(self.name + DEAD_LETTER_SUFFIX, dlq_options, is_dead_letter=True)

    @property
    def requires_session(self) -> bool:
        return self.options.requires_session and not self.is_dead_letter

    def in_order(self) -> Iterator[StoredMessage]:
        """The messages by sequence number (a copy: callers may settle while they walk)."""
        return iter(list(self._ordered().values()))

    def _ordered(self) -> dict[int, StoredMessage]:
        """``messages`` in sequence-number order, itself: for walks that change nothing."""
        if not self._in_order:  # a dead letter came with an older sequence number: sort once
            self.messages = dict(sorted(self.messages.items()))
            self._in_order = True
        return self.messages

    def add(self, stored: StoredMessage) -> None:
        if self.messages and stored.sequence_number < next(reversed(self.messages)):
            self._in_order = False
        self.messages[stored.sequence_number] = stored
        if stored.session_id is not None:  # added in sequence order: only a dead-letter queue is not
            self._by_session.setdefault(stored.session_id, {})[stored.sequence_number] = stored

    # -- receiving -----------------------------------------------------------------------------

    def next_available(self, session_id: str | None = None) -> StoredMessage | None:
        if self.requires_session:  # the session's own messages, not a walk over every session's
            candidates = self._by_session.get(session_id or "", {}).values()
        else:
            candidates = self._ordered().values()
        for stored in candidates:
            if stored.state is MessageState.ACTIVE and stored.lock is None:
                return stored
        return None

    def lock(self, stored: StoredMessage, owner: object, now: float) -> MessageLock:
        locked_until = now + self.options.lock_duration_s
        session = self.sessions.get(stored.session_id or "") if self.requires_session else None
        if session is not None:
            # A session's messages are held by the session lock, not by a clock of their own.
            locked_until = session.locked_until
        stored.lock = MessageLock(uuid.uuid4(), locked_until, owner)
        self.locks[stored.lock.token] = stored
        return stored.lock

    def remove(self, stored: StoredMessage) -> None:
        self.messages.pop(stored.sequence_number, None)
        session_id = stored.session_id
        if session_id is not None and (group := self._by_session.get(session_id)) is not None:
            group.pop(stored.sequence_number, None)
            if not group:
                del self._by_session[session_id]
        if stored.lock is not None:
            self.locks.pop(stored.lock.token, None)
            stored.lock = None

    # -- settlement ----------------------------------------------------------------------------

    def locked(self, token: uuid.UUID, now: float) -> StoredMessage:
        stored = self.locks.get(token)
        if stored is None or stored.lock is None or self._lock_expired(stored, now):
            if self.requires_session:  # every message here is held by its session's lock
                raise SessionLockLost(f"The session lock behind {token} is lost or has expired.")
            raise LockLost(f"The lock {token} is lost or has expired.")
        return stored

    def complete(self, token: uuid.UUID, now: float) -> None:
        self.remove(self.locked(token, now))

    def abandon(
        self, token: uuid.UUID, now: float, properties_to_modify: dict[Any, Any] | None = None
    ) -> None:
        stored = self.locked(token, now)
        if properties_to_modify:  # Service Bus applies them to the application properties
            properties = {
                **(stored.message.properties or {}),
                **{str(k): v for k, v in properties_to_modify.items()},
            }
            cast(Any, stored.message).properties = properties
        self._unlock(stored)
        self._count_failed_delivery(stored)

    def release(self, token: uuid.UUID, now: float) -> None:
        self._unlock(self.locked(token, now))

    def defer(self, token: uuid.UUID, now: float) -> None:
        stored = self.locked(token, now)
        self._unlock(stored)
        stored.state = MessageState.DEFERRED

    def dead_letter(self, token: uuid.UUID, now: float, reason: str | None, description: str | None) -> None:
        stored = self.locked(token, now)
        self._unlock(stored)
        self.move_to_dead_letter(stored, reason, description)

    def renew(self, token: uuid.UUID, now: float) -> float:
        stored = self.locked(token, now)
        assert stored.lock is not None
        stored.lock.locked_until = now + self.options.lock_duration_s
        return stored.lock.locked_until

    def move_to_dead_letter(self, stored: StoredMessage, reason: str | None, description: str | None) -> None:
        if self.dead_letter_queue is None:
            return  # a dead-lettered message is never dead-lettered again
        self.remove(stored)
        props: dict[str, Any] = dict(stored.message.properties or {})
        if reason is not None:
            props["DeadLetterReason"] = reason
        if description is not None:
            props["DeadLetterErrorDescription"] = description
        cast(Any, stored.message).properties = props  # proton annotates the setter as None only
        stored.state = MessageState.ACTIVE
        stored.dead_letter_source = self.name
        self.dead_letter_queue.add(stored)

    # -- faults and the clock ------------------------------------------------------------------

    def expire_locks(self, now: float, *, force: bool = False, message_id: str | None = None) -> int:
        """Return messages whose lock expired (or all matching ones with ``force``) to the queue."""
        expired = [
            stored
            for stored in list(self.locks.values())
            if (force or self._lock_expired(stored, now))
            and (message_id is None or str(stored.message.id) == message_id)
        ]
        for stored in expired:
            if force and self.requires_session:
                # A session message's lock is its session's lock (as on Service Bus): it expires too.
                info = self.sessions.get(stored.session_id or "")
                if info is not None:
                    info.locked_until = min(info.locked_until, now)
            self._lose_lock(stored)
        return len(expired)

    def lose_locks_of(self, owner: object) -> int:
        """The owner's connection is gone: its message locks go with it (Microsoft's documented rule)."""
        lost = [stored for stored in list(self.locks.values()) if stored.lock and stored.lock.owner is owner]
        for stored in lost:
            self._lose_lock(stored)
        return len(lost)

    def enqueue_due(self, now: float) -> int:
        due = [
            s
            for s in self.messages.values()
            if s.state is MessageState.SCHEDULED and (s.scheduled_time or 0) <= now
        ]
        for stored in due:
            stored.state = MessageState.ACTIVE
            stored.enqueued_time = stored.scheduled_time or now
        return len(due)

    def cancel_scheduled(self, sequence_number: int) -> None:
        stored = self.messages.get(sequence_number)
        if stored is None or stored.state is not MessageState.SCHEDULED:
            raise MessageNotFound(f"No scheduled message has sequence number {sequence_number}.")
        self.remove(stored)

    # -- sessions ------------------------------------------------------------------------------

    def lock_session(self, session_id: str, owner: object, now: float) -> SessionInfo | None:
        """Lock ``session_id`` for ``owner``; None when another receiver holds it."""
        info = self.sessions.setdefault(session_id, SessionInfo())
        if info.owner is not None and info.owner is not owner:
            return None
        info.owner = owner
        info.locked_until = now + self.options.lock_duration_s
        return info

    def next_available_session(self) -> str | None:
        """The session of the oldest active, unlocked message among the sessions nobody holds.

        By session, not over every message: accepts that wait are asked again at every tick, and
        a walk over a queue of thousands of messages whose sessions are all held was a sixth of the
        peer's CPU in ``bench/azure.py --sessions`` (the peer shares the cores with the worker)."""
        if not self._in_order:  # a dead-letter queue's groups may be out of order: the full walk
            return next(iter(self._available_sessions_in_order()), None)
        found: tuple[int, str] | None = None
        for session_id, group in self._by_session.items():
            info = self.sessions.get(session_id)
            if info is not None and info.owner is not None:
                continue
            for sequence_number, stored in group.items():
                if found is not None and sequence_number >= found[0]:
                    break
                if stored.state is MessageState.ACTIVE and stored.lock is None:
                    found = (sequence_number, session_id)
                    break
        return None if found is None else found[1]

    def _available_sessions_in_order(self) -> Iterator[str]:
        """Every message's session in sequence order, where the message is active and unlocked and
        nobody holds its session: what ``next_available_session`` takes the first of."""
        for stored in self._ordered().values():
            session_id = stored.session_id
            if session_id is None or stored.state is not MessageState.ACTIVE or stored.lock is not None:
                continue
            info = self.sessions.get(session_id)
            if info is None or info.owner is None:
                yield session_id

    def owned_session(self, session_id: str | None, now: float) -> SessionInfo:
        info = self.sessions.get(session_id or "")
        if info is None or info.owner is None or info.locked_until <= now:
            raise SessionLockLost(f"The session {session_id!r} is not locked.")
        return info

    def unlock_session(self, session_id: str) -> None:
        """Give the session up: messages it still held go back with delivery count + 1."""
        info = self.sessions.get(session_id)
        if info is None:
            return
        info.owner = None
        for stored in list(self.locks.values()):
            if stored.session_id == session_id:
                self._lose_lock(stored)

    def expired_sessions(self, now: float) -> list[str]:
        return [
            sid for sid, info in self.sessions.items() if info.owner is not None and info.locked_until <= now
        ]

    # -- internals -----------------------------------------------------------------------------

    def _lock_expired(self, stored: StoredMessage, now: float) -> bool:
        if stored.lock is None:
            return True
        if self.requires_session:
            info = self.sessions.get(stored.session_id or "")
            return info is None or info.owner is None or info.locked_until <= now
        return stored.lock.locked_until <= now

    def _unlock(self, stored: StoredMessage) -> None:
        if stored.lock is not None:
            self.locks.pop(stored.lock.token, None)
            stored.lock = None

    def _lose_lock(self, stored: StoredMessage) -> None:
        self._unlock(stored)
        self._count_failed_delivery(stored)

    def _count_failed_delivery(self, stored: StoredMessage) -> None:
        stored.delivery_count += 1
        limit = self.options.max_delivery_count
        if not self.is_dead_letter and stored.delivery_count >= limit:
            description = f"Message could not be consumed after {limit} delivery attempts."
            self.move_to_dead_letter(stored, MAX_DELIVERY_COUNT_EXCEEDED, description)
