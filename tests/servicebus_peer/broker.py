"""The namespace: entities by name, sequence numbers, sending (with topic fan-out) and the clock.

Names are case-insensitive, as on Service Bus. Receivable names are a queue (``cwi``), a topic
subscription (``topic/Subscriptions/sub``) and either one's dead-letter sub-queue
(``.../$DeadLetterQueue``); sendable names are queues and topics.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import proton

from tests.servicebus_peer import codec
from tests.servicebus_peer.entities import (
    DEAD_LETTER_SUFFIX,
    EntityOptions,
    MessageState,
    Queue,
    StoredMessage,
)

SCHEDULED_ENQUEUE_TIME = proton.symbol("x-opt-scheduled-enqueue-time")
_SUBSCRIPTIONS = "/subscriptions/"


class EntityNotFound(Exception):
    """No such queue, topic or subscription."""


class SendRefused(Exception):
    """The entity does not take this message (no session id on a session entity, a sub-queue)."""


def entity_path(address: str) -> str:
    """``amqps://host:port/Queue/`` → ``queue``: the lower-cased path Service Bus matches on."""
    if "://" in address:
        address = urlsplit(address).path
    return address.strip("/").lower()


class Broker:
    def __init__(self, entities: Mapping[str, EntityOptions]) -> None:
        self._queues: dict[str, Queue] = {}
        self._topics: dict[str, list[Queue]] = {}
        """A topic's subscriptions, each a queue of its own."""
        self._sequences: dict[str, Iterator[int]] = {}
        for name, options in entities.items():
            self._add(name, options)

    def _add(self, name: str, options: EntityOptions) -> None:
        """A queue; a topic with ``options.subscriptions``; or one subscription named in full."""
        path = entity_path(name)
        topic, _, subscription = path.partition(_SUBSCRIPTIONS)
        if subscription:
            self._add_subscription(topic, subscription, options)
        elif options.subscriptions:
            for sub in options.subscriptions:
                self._add_subscription(path, entity_path(sub), options)
        else:
            self._register(Queue(path, options))

    def _add_subscription(self, topic: str, subscription: str, options: EntityOptions) -> None:
        queue = Queue(f"{topic}{_SUBSCRIPTIONS}{subscription}", options)
        self._register(queue)
        self._topics.setdefault(topic, []).append(queue)

    def _register(self, queue: Queue) -> None:
        self._queues[queue.name] = queue
        if queue.dead_letter_queue is not None:
            self._queues[queue.dead_letter_queue.name.lower()] = queue.dead_letter_queue

    def queues(self) -> Iterator[Queue]:
        yield from self._queues.values()

    def receivable(self, address: str) -> Queue:
        queue = self._queues.get(entity_path(address))
        if queue is None:
            raise EntityNotFound(f"The messaging entity '{entity_path(address)}' could not be found.")
        return queue

    def dead_letter_of(self, address: str) -> Queue:
        queue = self.receivable(address)
        if queue.dead_letter_queue is None:
            return queue
        return queue.dead_letter_queue

    def is_sendable(self, address: str) -> bool:
        path = entity_path(address)
        return path in self._topics or (
            path in self._queues and not path.endswith(DEAD_LETTER_SUFFIX.lower())
        )

    def validate(self, address: str, message: proton.Message) -> list[Queue]:
        """The queues that would take ``message``; raises when the send would be refused."""
        path = entity_path(address)
        if not self.is_sendable(address):
            raise EntityNotFound(f"The messaging entity '{path}' could not be found.")
        targets = self.queues_of(path)
        if any(queue.requires_session for queue in targets) and message.group_id is None:
            raise SendRefused(f"The entity '{path}' requires sessions: the message must carry a session id.")
        return targets

    def store(self, address: str, message: proton.Message, now: float) -> tuple[int, list[Queue]]:
        """Store ``message`` (scheduled if its annotations say so) in every queue behind ``address``.

        Returns its sequence number and the queues that got a copy.
        """
        targets = self.validate(address, message)
        # Sequence numbers count per entity; a topic's subscriptions share the topic's.
        sequence_number = next(self._sequences.setdefault(entity_path(address), itertools.count(1)))
        scheduled = _scheduled_time(message)
        encoded = message.encode()
        for queue in targets:
            copy = codec.decode(encoded)  # each subscription settles its own copy
            stored = StoredMessage(sequence_number, copy, enqueued_time=now)
            if scheduled is not None and scheduled > now:
                stored.state = MessageState.SCHEDULED
                stored.scheduled_time = scheduled
            queue.add(stored)
        return sequence_number, targets

    def queues_of(self, address: str) -> list[Queue]:
        path = entity_path(address)
        return list(self._topics[path]) if path in self._topics else [self.receivable(path)]


def _scheduled_time(message: proton.Message) -> float | None:
    annotations: dict[Any, Any] = dict(message.annotations or {})
    value = annotations.get(SCHEDULED_ENQUEUE_TIME)
    if value is None:
        return None
    if hasattr(value, "timestamp"):  # a datetime, should a sender encode it that way
        return float(value.timestamp())
    return int(value) / 1000.0
