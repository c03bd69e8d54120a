"""``<entity>/$management`` operations: request body in, status and reply body out.

Replies use the spelling Service Bus uses on this node (``statusCode``/``statusDescription``,
``errorCondition``); ``$cbs`` spells them differently and is answered by the handler.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import proton

from tests.servicebus_peer import codec
from tests.servicebus_peer.broker import Broker, EntityNotFound, SendRefused, entity_path
from tests.servicebus_peer.entities import (
    LockLost,
    MessageNotFound,
    MessageState,
    Queue,
    SessionLockLost,
    StoredMessage,
)

MANAGEMENT_SUFFIX = "/$management"
_OP_PREFIX = "com.microsoft:"


@dataclass
class Reply:
    status: int
    description: str = "OK"
    body: Any = None
    condition: str | None = None
    settled_tokens: list[uuid.UUID] = field(default_factory=list)
    """Lock tokens settled here, so the handler can settle their link deliveries too."""


@dataclass
class Request:
    broker: Broker
    address: str
    """The entity path, without ``/$management``."""
    body: dict[str, Any]
    owner: object
    now: float

    def queue(self) -> Queue:
        return self.broker.receivable(self.address)

    def session_id(self) -> str | None:
        value = self.body.get("session-id")
        return None if value is None else str(value)


def _items(value: Any) -> list[Any]:
    if isinstance(value, proton.Array):
        return list(value.elements)
    return list(value or [])


def _uuids(value: Any) -> list[uuid.UUID]:
    return [item if isinstance(item, uuid.UUID) else uuid.UUID(str(item)) for item in _items(value)]


def _array(kind: int, values: list[Any]) -> proton.Array:
    # proton annotates the descriptor as data, though UNDESCRIBED is what marks a plain array.
    return proton.Array(cast(Any, proton.UNDESCRIBED), kind, *values)


def renew_lock(request: Request) -> Reply:
    queue = request.queue()
    expirations = [queue.renew(token, request.now) for token in _uuids(request.body.get("lock-tokens"))]
    stamps = _array(proton.Data.TIMESTAMP, [codec.timestamp(e) for e in expirations])
    return Reply(200, body={"expirations": stamps})


def update_disposition(request: Request) -> Reply:
    queue = request.queue()
    status = str(request.body.get("disposition-status"))
    tokens = _uuids(request.body.get("lock-tokens"))
    for token in tokens:
        queue.locked(token, request.now)  # all or nothing: check every lock first
    for token in tokens:
        if status == "completed":
            queue.complete(token, request.now)
        elif status == "abandoned":
            queue.abandon(token, request.now, request.body.get("properties-to-modify"))
        elif status == "defered":
            queue.defer(token, request.now)
        elif status == "suspended":
            reason = request.body.get("deadletter-reason")
            description = request.body.get("deadletter-description")
            queue.dead_letter(token, request.now, reason, description)
        else:
            return Reply(
                400, f"Unknown disposition-status {status!r}.", condition="com.microsoft:argument-error"
            )
    return Reply(200, settled_tokens=tokens)


def peek_message(request: Request) -> Reply:
    queue = request.queue()
    start = int(request.body.get("from-sequence-number") or 0)
    count = int(request.body.get("message-count") or 1)
    session_id = request.session_id()
    picked: list[StoredMessage] = []
    for stored in queue.in_order():
        if stored.sequence_number < start or (session_id is not None and stored.session_id != session_id):
            continue
        picked.append(stored)
        if len(picked) >= count:
            break
    if not picked:
        return Reply(204, "No messages to peek.")
    messages = [{"message": codec.encode_for_delivery(s, with_state=True)} for s in picked]
    return Reply(200, body={"messages": messages})


def receive_by_sequence_number(request: Request) -> Reply:
    queue = request.queue()
    peek_lock = int(request.body.get("receiver-settle-mode") or 0) == 1
    found: list[StoredMessage] = []
    for number in _items(request.body.get("sequence-numbers")):
        stored = queue.messages.get(int(number))
        if stored is None or stored.state is not MessageState.DEFERRED or stored.lock is not None:
            raise MessageNotFound(f"No deferred message has sequence number {number}.")
        found.append(stored)
    messages = []
    for stored in found:
        if peek_lock:
            lock = queue.lock(stored, request.owner, request.now)
            body = codec.encode_for_delivery(stored, lock=lock, with_state=True)
            messages.append({"lock-token": lock.token, "message": body})
        else:
            messages.append({"message": codec.encode_for_delivery(stored, with_state=True)})
            queue.remove(stored)
    return Reply(200, body={"messages": messages})


def schedule_message(request: Request) -> Reply:
    numbers = []
    for item in _items(request.body.get("messages")):
        message = codec.decode(bytes(item["message"]))
        numbers.append(request.broker.store(request.address, message, request.now)[0])
    return Reply(200, body={"sequence-numbers": _array(proton.Data.LONG, numbers)})


def cancel_scheduled_message(request: Request) -> Reply:
    numbers = [int(n) for n in _items(request.body.get("sequence-numbers"))]
    for queue in request.broker.queues_of(request.address):
        for number in numbers:
            queue.cancel_scheduled(number)
    return Reply(200)


def renew_session_lock(request: Request) -> Reply:
    queue = request.queue()
    info = queue.owned_session(request.session_id(), request.now)
    info.locked_until = request.now + queue.options.lock_duration_s
    return Reply(200, body={"expiration": codec.timestamp(info.locked_until)})


def get_session_state(request: Request) -> Reply:
    info = request.queue().owned_session(request.session_id(), request.now)
    return Reply(200, body={"session-state": info.state})


def set_session_state(request: Request) -> Reply:
    info = request.queue().owned_session(request.session_id(), request.now)
    state = request.body.get("session-state")
    info.state = None if state is None else bytes(state)
    return Reply(200)


OPERATIONS: dict[str, Callable[[Request], Reply]] = {
    "renew-lock": renew_lock,
    "update-disposition": update_disposition,
    "peek-message": peek_message,
    "receive-by-sequence-number": receive_by_sequence_number,
    "schedule-message": schedule_message,
    "cancel-scheduled-message": cancel_scheduled_message,
    "renew-session-lock": renew_session_lock,
    "get-session-state": get_session_state,
    "set-session-state": set_session_state,
}


def execute(broker: Broker, node: str, message: proton.Message, owner: object, now: float) -> Reply:
    """Run the operation ``message`` asks for on ``node`` (``<entity>/$management``)."""
    properties: dict[Any, Any] = dict(message.properties or {})
    operation = str(properties.get("operation", ""))
    handler = OPERATIONS.get(operation.removeprefix(_OP_PREFIX))
    if handler is None:
        return Reply(
            501,
            f"Operation {operation!r} is not implemented by the test peer.",
            condition="amqp:not-implemented",
        )
    address = entity_path(node).removesuffix(MANAGEMENT_SUFFIX.lower())
    body = message.body if isinstance(message.body, dict) else {}
    request = Request(broker, address, {str(k): v for k, v in body.items()}, owner, now)
    try:
        return handler(request)
    except LockLost as error:
        return Reply(410, str(error), condition="com.microsoft:message-lock-lost")
    except SessionLockLost as error:
        return Reply(410, str(error), condition="com.microsoft:session-lock-lost")
    except MessageNotFound as error:
        return Reply(404, str(error), condition="com.microsoft:message-not-found")
    except EntityNotFound as error:
        return Reply(404, str(error), condition="amqp:not-found")
    except SendRefused as error:
        return Reply(400, str(error), condition="com.microsoft:argument-error")
    except (KeyError, TypeError, ValueError) as error:
        return Reply(400, f"Bad request: {error!r}", condition="com.microsoft:argument-error")


def reply_message(request: proton.Message, reply: Reply) -> proton.Message:
    properties: dict[str, Any] = {"statusCode": reply.status, "statusDescription": reply.description}
    if reply.condition is not None:
        properties["errorCondition"] = proton.symbol(reply.condition)
    return proton.Message(body=reply.body, correlation_id=request.id, properties=properties)
