"""The bus message of one delivery attempt: everything its delivery-log row holds, so that the row
can be written by whichever comes first (the event's journal, or the message's handler).

The transport property ``cwi-kind: webhook.delivery`` routes it to the publisher; its body says
``"type": "webhook.delivery"`` and names the client, so that operators' tools (``cwi dlq``, the
console) list, filter and replay a dead-lettered delivery like any other message.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from config_db import deliveries
from config_db.deliveries import StoredDelivery
from worker import tracing
from worker.buses.base import OutgoingMessage

KIND_PROPERTY = "cwi-kind"
KIND = "webhook.delivery"
_NAMESPACE = uuid.UUID("0d7f6a52-3c1b-4e59-8f0e-5b1c9a7d2e41")


class DeliveryMessage(BaseModel):
    """The body. Unknown keys are ignored (a replay adds ``source``)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    type: str = KIND
    id: str
    client_id: str
    subscription_id: str
    event_id: str
    event_type: str
    entity: str
    record_id: str
    payload: str
    attempt: int = 1
    created_at: dt.datetime

    def row(self) -> dict[str, Any]:
        """The delivery-log row this message stands for, as first written."""
        return {
            "delivery_id": self.id,
            "subscription_id": self.subscription_id,
            "client_id": self.client_id,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "entity": self.entity,
            "record_id": self.record_id,
            "payload": self.payload,
            "status": deliveries.QUEUED,
            "attempts": 0,
            "created_at": self.created_at,
            "first_attempt_at": None,
            "last_attempt_at": None,
            "next_attempt_at": None,
            "delivered_at": None,
            "last_status": None,
            "last_error": None,
            "response_excerpt": None,
            "latency_ms": None,
        }


class BadDeliveryMessage(ValueError):
    pass


def parse(body: bytes) -> DeliveryMessage:
    try:
        return DeliveryMessage.model_validate_json(body)
    except ValidationError as exc:
        raise BadDeliveryMessage(f"not a webhook delivery message: {exc.errors()[0]['msg']}") from None


def delivery_id(subscription_id: str, event_id: str) -> str:
    """The same event for the same subscription is always the same delivery (``webhook-id``)."""
    return str(uuid.uuid5(_NAMESPACE, f"{subscription_id}\n{event_id}"))


def first(message: DeliveryMessage) -> OutgoingMessage:
    """The first attempt's message: its id derived from the delivery (a publisher's retry is a duplicate)."""
    return _outgoing(message, f"{message.id}.1")


def again(stored: StoredDelivery, attempt: int, at: dt.datetime | None = None) -> OutgoingMessage:
    """A later attempt's message (a retry, or a parked delivery woken), visible at ``at``."""
    message = DeliveryMessage(
        id=stored.delivery_id,
        client_id=stored.client_id,
        subscription_id=stored.subscription_id,
        event_id=stored.event_id,
        event_type=stored.event_type,
        entity=stored.entity,
        record_id=stored.record_id,
        payload=stored.payload,
        attempt=attempt,
        created_at=stored.created_at,
    )
    return _outgoing(message, f"{stored.delivery_id}.{attempt}.{uuid.uuid4().hex[:12]}", at)


def _outgoing(message: DeliveryMessage, message_id: str, at: dt.datetime | None = None) -> OutgoingMessage:
    # In the trace of the change it delivers (worker/tracing.py), when tracing is on.
    traced = tracing.message_properties(
        **{"messaging.message.id": message_id, "cwi.client": message.client_id, "cwi.delivery_id": message.id}
    )
    return OutgoingMessage(
        body=message.model_dump_json().encode(),
        message_id=message_id,
        session_id=message.subscription_id,
        properties={KIND_PROPERTY: KIND, "envelope_id": message.event_id, "type": KIND, **traced},
        scheduled_at=at,
    )
