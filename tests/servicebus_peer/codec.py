"""AMQP encoding the SDK expects: batches, broker annotations, error conditions, time formats."""

from __future__ import annotations

import uuid
from typing import Any, cast

import proton

from tests.servicebus_peer.entities import MessageLock, StoredMessage

SEQUENCE_NUMBER = proton.symbol("x-opt-sequence-number")
ENQUEUED_TIME = proton.symbol("x-opt-enqueued-time")
LOCKED_UNTIL = proton.symbol("x-opt-locked-until")
MESSAGE_STATE = proton.symbol("x-opt-message-state")
DEAD_LETTER_SOURCE = proton.symbol("x-opt-deadletter-source")
TRACKING_ID = proton.symbol("com.microsoft:tracking-id")

# .NET ticks (100 ns) at the Unix epoch: how Service Bus writes com.microsoft:locked-until-utc.
_DOTNET_EPOCH_TICKS = 621355968000000000

_MESSAGE_SECTIONS = range(0x70, 0x79)  # header .. footer descriptors
_BODY_SECTIONS = (0x75, 0x76, 0x77)  # data, amqp-sequence, amqp-value
_DATA_SECTION = 0x75
_HEADER_SECTION = 0x70


def timestamp(epoch_seconds: float) -> proton.timestamp:
    return proton.timestamp(int(epoch_seconds * 1000))


def dotnet_ticks(epoch_seconds: float) -> int:
    return _DOTNET_EPOCH_TICKS + int(epoch_seconds * 10_000_000)


def condition(name: str, description: str) -> proton.Condition:
    """An error condition that always carries an info map: the SDK's sender hangs on one without."""
    return proton.Condition(name, description, {TRACKING_ID: str(uuid.uuid4())})


def _sections(encoded: bytes) -> list[tuple[int, object]] | None:
    """Split encoded message sections into (descriptor, value); None when it is not a message."""
    sections: list[tuple[int, object]] = []
    data = proton.Data()
    rest = encoded
    while rest:
        data.clear()
        try:
            consumed = data.decode(rest)
        except proton.DataException:
            return None
        data.rewind()
        data.next()
        if consumed <= 0 or data.type() != proton.Data.DESCRIBED:
            return None
        described = data.get_object()
        if not isinstance(described, proton.Described):
            return None
        descriptor = described.descriptor
        if not isinstance(descriptor, int) or descriptor not in _MESSAGE_SECTIONS:
            return None
        value = described.value
        sections.append((descriptor, bytes(value) if isinstance(value, memoryview) else value))
        rest = rest[consumed:]
    return sections


def split_batch(encoded: bytes) -> list[bytes] | None:
    """The encoded messages of an SDK batch, or None for a plain message.

    python-qpid-proton cannot read a transfer's message format, so a batch (format 0x80013700)
    is told by its shape: a body of data sections, each of them a complete encoded message.
    """
    sections = _sections(encoded)
    if not sections:
        return None
    bodies = [value for descriptor, value in sections if descriptor in _BODY_SECTIONS]
    if len(bodies) != len([d for d, _ in sections if d == _DATA_SECTION]) or not bodies:
        return None
    for body in bodies:
        inner = _sections(body) if isinstance(body, bytes) else None
        if not inner or not any(descriptor in _BODY_SECTIONS for descriptor, _ in inner):
            return None
    return [body for body in bodies if isinstance(body, bytes)]


def decode(encoded: bytes) -> proton.Message:
    message = proton.Message()
    message.decode(encoded)
    if isinstance(message.body, memoryview):
        message.body = bytes(message.body)
    return message


def encode_for_delivery(
    stored: StoredMessage, *, lock: MessageLock | None = None, with_state: bool = False
) -> bytes:
    """The stored message as a receiver sees it: broker annotations and the delivery count."""
    message = decode(stored.message.encode())
    annotations: dict[Any, Any] = dict(message.annotations or {})
    annotations[SEQUENCE_NUMBER] = stored.sequence_number
    annotations[ENQUEUED_TIME] = timestamp(stored.enqueued_time)
    if lock is not None:
        annotations[LOCKED_UNTIL] = timestamp(lock.locked_until)
    if with_state:
        annotations[MESSAGE_STATE] = stored.state.value
    if stored.dead_letter_source is not None:
        annotations[DEAD_LETTER_SOURCE] = stored.dead_letter_source
    cast(Any, message).annotations = annotations
    return _with_header(message, stored.delivery_count)


def _with_header(message: proton.Message, delivery_count: int) -> bytes:
    """Encode ``message`` with a header that states its delivery count even when it is 0.

    proton leaves a zero count out, and the SDK then reports ``delivery_count`` as None where
    Service Bus gives 0.
    """
    header = proton.Data()
    header.put_described()
    header.enter()
    header.put_ulong(_HEADER_SECTION)
    header.put_list()
    header.enter()
    header.put_bool(bool(message.durable))
    header.put_ubyte(message.priority)
    if message.ttl:
        header.put_uint(int(message.ttl * 1000))
    else:
        header.put_null()
    header.put_bool(bool(message.first_acquirer))
    header.put_uint(delivery_count)
    header.exit()
    header.exit()
    body: bytes = message.encode()
    if body[:3] == b"\x00\x53" + bytes([_HEADER_SECTION]):
        skip = proton.Data()
        body = body[skip.decode(body) :]
    return bytes(header.encode()) + body
