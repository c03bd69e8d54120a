"""Messages between the Bus protocol and the SDK: outgoing messages, deliveries, dead letters."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from azure.servicebus import ServiceBusMessage, ServiceBusMessageBatch, ServiceBusReceivedMessage
from azure.servicebus.amqp import AmqpMessageBodyType
from azure.servicebus.exceptions import MessageSizeExceededError

from worker.buses.base import DeadLetter, Delivery, OutgoingMessage

Message = ServiceBusReceivedMessage

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


def _sendable(value: Any) -> Any:
    """A received property value as one Service Bus can carry again (a retry's copy keeps the
    message's properties): another publisher's map, list or binary value becomes its text, which
    ``outgoing_properties`` refused, failing every retry of that message."""
    value = _text(value)
    if value is None or isinstance(value, _PROPERTY_TYPES):
        return value
    return value.hex() if isinstance(value, bytes) else str(value)


def incoming_properties(properties: Mapping[str | bytes, Any] | None) -> dict[str, Any]:
    return {str(_text(k)): _sendable(v) for k, v in (properties or {}).items()}


def message_id_of(message: ServiceBusReceivedMessage) -> str:
    return str(message.message_id or f"seq-{message.sequence_number}")


def _enqueued_at(message: ServiceBusReceivedMessage) -> dt.datetime:
    return message.enqueued_time_utc or dt.datetime.now(dt.UTC)


def to_delivery(
    message: ServiceBusReceivedMessage,
    lock: Any,
    properties: Mapping[str, Any] | None = None,
    lock_expires: float | None = None,
) -> Delivery:
    """A Delivery; its count includes this delivery (the AMQP header counts earlier ones), as locally.

    ``properties`` replace the message's own for a message handed out again after a retry held in
    place (Service Bus cannot change a locked message's properties); ``lock_expires`` is the
    session's lock end for a session's message (the message itself carries none)."""
    return Delivery(
        body=body_bytes(message),
        message_id=message_id_of(message),
        delivery_count=(message.delivery_count or 0) + 1,
        enqueued_at=_enqueued_at(message),
        session_id=message.session_id,
        properties=incoming_properties(message.application_properties) if properties is None else properties,
        lock=lock,
        lock_expires=_lock_expires(message) if lock_expires is None else lock_expires,
    )


def _lock_expires(message: ServiceBusReceivedMessage) -> float | None:
    """The message's lock end on our monotonic clock (None with sessions: the session's lock holds
    it). Read against our wall clock: a clock ahead of the service's only renews sooner, and one
    behind it changes nothing (the runner takes the sooner of this and a full lock from hand-out)."""
    left = lock_left_s(message)
    return None if left is None else time.monotonic() + left


# Service Bus keeps the dead-letter reason and description among the application properties.
_DEAD_LETTER_PROPERTIES = frozenset({"DeadLetterReason", "DeadLetterErrorDescription"})


def to_dead_letter(message: ServiceBusReceivedMessage) -> DeadLetter:
    properties = incoming_properties(message.application_properties)
    return DeadLetter(
        message_id=message_id_of(message),
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


def lock_left_s(message: ServiceBusReceivedMessage) -> float | None:
    until = message.locked_until_utc
    return None if until is None else (until - dt.datetime.now(dt.UTC)).total_seconds()
