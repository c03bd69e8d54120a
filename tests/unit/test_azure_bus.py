"""The Azure Service Bus adapter's pure parts: settings, message mapping, batching, error translation."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from azure.identity.aio import DefaultAzureCredential
from azure.servicebus import ServiceBusMessage, ServiceBusMessageBatch, ServiceBusReceivedMessage
from azure.servicebus._pyamqp._encode import encode_payload
from azure.servicebus._transport._pyamqp_transport import PyamqpTransport
from azure.servicebus.exceptions import (
    MessageAlreadySettled,
    MessageLockLostError,
    ServiceBusConnectionError,
    ServiceBusError,
    SessionLockLostError,
)

from worker.buses.azure import (
    AzureBus,
    SettlementUnconfirmedError,
    incoming_properties,
    lock_errors,
    outgoing_properties,
    send_in_batches,
    to_dead_letter,
    to_delivery,
    to_service_bus_message,
)
from worker.buses.base import LockLostError, OutgoingMessage
from worker.settings import AzureBusSettings, SettingsError, load_azure_settings

CONN = "Endpoint=sb://127.0.0.1:5672;SharedAccessKeyName=k;SharedAccessKey=v;UseDevelopmentEmulator=true"


@pytest.fixture(autouse=True)
def _no_servicebus_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in AzureBusSettings.model_fields:
        monkeypatch.delenv(f"CWI_{name.upper()}", raising=False)


# --- settings -----------------------------------------------------------------------------------


def test_queue_with_connection_string() -> None:
    s = load_azure_settings(servicebus_queue="cwi", servicebus_connection_string=CONN)
    assert (s.entity, s.send_entity, s.connection_string, s.servicebus_sessions) == (
        "cwi",
        "cwi",
        CONN,
        False,
    )


def test_topic_subscription_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CWI_SERVICEBUS_TOPIC", "events")
    monkeypatch.setenv("CWI_SERVICEBUS_SUBSCRIPTION", "worker")
    monkeypatch.setenv("CWI_SERVICEBUS_NAMESPACE", "contracting")
    monkeypatch.setenv("CWI_SERVICEBUS_SESSIONS", "true")
    s = load_azure_settings()
    assert s.entity == "events/Subscriptions/worker"
    assert s.send_entity == "events"
    assert s.servicebus_namespace == "contracting.servicebus.windows.net"
    assert s.servicebus_sessions is True


@pytest.mark.parametrize(
    "namespace",
    ["cw.servicebus.windows.net", "sb://cw.servicebus.windows.net/", "https://cw.servicebus.windows.net"],
)
def test_namespace_forms(namespace: str) -> None:
    s = load_azure_settings(servicebus_queue="q", servicebus_namespace=namespace)
    assert s.servicebus_namespace == "cw.servicebus.windows.net"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"servicebus_connection_string": CONN}, "CWI_SERVICEBUS_QUEUE or CWI_SERVICEBUS_TOPIC"),
        (
            {"servicebus_queue": "q", "servicebus_topic": "t", "servicebus_connection_string": CONN},
            "not both",
        ),
        (
            {"servicebus_topic": "t", "servicebus_connection_string": CONN},
            "CWI_SERVICEBUS_SUBSCRIPTION is required",
        ),
        (
            {"servicebus_queue": "q", "servicebus_subscription": "s", "servicebus_connection_string": CONN},
            "a queue",
        ),
        ({"servicebus_queue": "q"}, "CWI_SERVICEBUS_CONNECTION_STRING or CWI_SERVICEBUS_NAMESPACE"),
        (
            {"servicebus_queue": "q", "servicebus_namespace": "n", "servicebus_connection_string": CONN},
            "not both",
        ),
        ({"servicebus_queue": "q", "servicebus_connection_string": "SharedAccessKey=secret"}, "Endpoint="),
        ({"servicebus_queue": "q", "servicebus_namespace": "a/b"}, "CWI_SERVICEBUS_NAMESPACE: must be"),
        (
            {"servicebus_queue": "q", "servicebus_namespace": "n", "servicebus_sessions": "maybe"},
            "CWI_SERVICEBUS_SESSIONS",
        ),
        ({"servicebus_queue": "q", "servicebus_namespace": "n", "servicebus_session_idle_s": 0}, "IDLE_S"),
    ],
)
def test_bad_settings_name_the_variable(overrides: dict[str, object], expected: str) -> None:
    with pytest.raises(SettingsError, match=expected):
        load_azure_settings(**overrides)


def test_a_bad_connection_string_is_not_echoed() -> None:
    with pytest.raises(SettingsError) as info:
        load_azure_settings(servicebus_queue="q", servicebus_connection_string="SharedAccessKey=hunter2")
    assert "hunter2" not in str(info.value)


def test_blank_values_count_as_unset() -> None:
    with pytest.raises(SettingsError, match="CWI_SERVICEBUS_QUEUE or CWI_SERVICEBUS_TOPIC"):
        load_azure_settings(servicebus_queue=" ", servicebus_connection_string=CONN)


# --- outgoing messages --------------------------------------------------------------------------


def test_outgoing_mapping() -> None:
    when = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    message = OutgoingMessage(
        body=b'{"id":"e1"}',
        message_id="m1",
        session_id="acme",
        properties={"envelope_id": "e1", "cwi-attempt": 2},
        scheduled_at=when,
    )
    sb = to_service_bus_message(message, sessions=True)
    assert b"".join(sb.body) == b'{"id":"e1"}'
    assert (sb.message_id, sb.session_id) == ("m1", "acme")
    assert sb.application_properties == {"envelope_id": "e1", "cwi-attempt": 2}
    assert sb.scheduled_enqueue_time_utc == dt.datetime(2030, 1, 2, 2, 4, 5, tzinfo=dt.UTC)


def test_outgoing_refusals() -> None:
    with pytest.raises(ValueError, match="naive"):
        to_service_bus_message(OutgoingMessage(b"x", "m", scheduled_at=dt.datetime(2030, 1, 1)))
    with pytest.raises(ValueError, match="no session id"):
        to_service_bus_message(OutgoingMessage(b"x", "m"), sessions=True)
    with pytest.raises(TypeError, match="'nested'"):
        to_service_bus_message(OutgoingMessage(b"x", "m", properties={"nested": {"a": 1}}))
    with pytest.raises(TypeError, match="'raw'"):  # the SDK would decode bytes as UTF-8 on send
        to_service_bus_message(OutgoingMessage(b"x", "m", properties={"raw": b"\xff"}))


# --- received messages (encoded and decoded by the SDK's own AMQP codec) -------------------------


def _received(message: ServiceBusMessage) -> ServiceBusReceivedMessage:
    amqp = PyamqpTransport.to_outgoing_amqp_message(message.raw_amqp_message)
    return ServiceBusReceivedMessage.from_bytes(bytes(encode_payload(bytearray(), amqp)))


def test_received_message_maps_to_a_delivery() -> None:
    sent = ServiceBusMessage(
        body=b'{"id":"e1"}',
        message_id="m1",
        session_id="acme",
        application_properties={"envelope_id": "e1", "cwi-attempt": 3, "ok": True},
    )
    lock = object()
    delivery = to_delivery(_received(sent), lock)
    assert delivery.body == b'{"id":"e1"}'
    assert (delivery.message_id, delivery.session_id, delivery.lock) == ("m1", "acme", lock)
    # The SDK hands received string keys and values over as bytes; the pipeline gets str.
    assert delivery.properties == {"envelope_id": "e1", "cwi-attempt": 3, "ok": True}
    assert delivery.delivery_count == 1  # no earlier deliveries in the header


def test_received_properties_are_values_service_bus_can_carry_again() -> None:
    # Received string keys and values arrive as bytes from the SDK: valid UTF-8 becomes str. Another
    # publisher's binary, map or list value becomes text: a retry's copy (or a replay) carries the
    # message's properties, and the SDK sends only simple values (it failed every retry).
    received: dict[str | bytes, Any] = {
        b"type": b"invoice.created",
        b"raw": b"\xff\xfe",
        "n": 1,
        "map": {b"a": 1},
        "list": [1, 2],
    }
    properties = incoming_properties(received)
    assert properties == {
        "type": "invoice.created",
        "raw": "fffe",
        "n": 1,
        "map": "{b'a': 1}",
        "list": "[1, 2]",
    }
    assert outgoing_properties(properties) == properties, "sendable again"
    assert incoming_properties(None) == {}


def test_dead_letter_mapping() -> None:
    sent = ServiceBusMessage(
        body=b"{}",
        message_id="m9",
        application_properties={
            "DeadLetterReason": "ProviderRejected",
            "DeadLetterErrorDescription": "400: bad vat",
        },
    )
    letter = to_dead_letter(_received(sent))
    assert (letter.message_id, letter.reason, letter.description, letter.body) == (
        "m9",
        "ProviderRejected",
        "400: bad vat",
        b"{}",
    )


# --- batching -----------------------------------------------------------------------------------


def _message(size: int) -> ServiceBusMessage:
    return ServiceBusMessage(body=b"x" * size, message_id=str(uuid.uuid4()))


async def test_batches_split_when_full_and_keep_order() -> None:
    messages = [_message(300) for _ in range(7)]
    sent: list[list[str | None]] = []

    async def new_batch() -> ServiceBusMessageBatch:
        return ServiceBusMessageBatch(max_size_in_bytes=1000)

    async def send(batch: ServiceBusMessageBatch) -> None:
        sent.append([m.message_id for m in batch._messages])

    count = await send_in_batches(messages, new_batch, send)
    assert count == len(sent) > 1
    assert [mid for batch in sent for mid in batch] == [m.message_id for m in messages]
    assert all(0 < len(batch) < 7 for batch in sent)


async def test_a_message_larger_than_a_batch_is_refused() -> None:
    async def new_batch() -> ServiceBusMessageBatch:
        return ServiceBusMessageBatch(max_size_in_bytes=500)

    sent: list[int] = []

    async def send(batch: ServiceBusMessageBatch) -> None:
        sent.append(len(batch))

    with pytest.raises(ValueError, match="does not fit in a batch"):
        await send_in_batches([_message(10), _message(2000)], new_batch, send)
    assert sent == [1]  # what came before was sent; the caller learns which message is too large


async def test_one_small_batch_is_one_send() -> None:
    async def new_batch() -> ServiceBusMessageBatch:
        return ServiceBusMessageBatch(max_size_in_bytes=10_000)

    sizes: list[int] = []

    async def send(batch: ServiceBusMessageBatch) -> None:
        sizes.append(len(batch))

    assert await send_in_batches([_message(10) for _ in range(5)], new_batch, send) == 1
    assert sizes == [5]


# --- settlement errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        MessageLockLostError(message="lock lost"),
        SessionLockLostError(message="session lock lost"),
        MessageAlreadySettled(action="complete"),
        ValueError("The handler has already been shutdown."),
    ],
)
def test_lost_locks_become_lock_lost(error: Exception) -> None:
    with pytest.raises(LockLostError, match="m1") as info, lock_errors("m1"):
        raise error
    assert not isinstance(info.value, SettlementUnconfirmedError)


@pytest.mark.parametrize(
    "error",
    [
        ServiceBusConnectionError(message="link detached"),
        # What the SDK raises when concurrent settlements race to reopen a dropped connection.
        ServiceBusError("Handler failed: 'NoneType' object has no attribute 'create_receiver_link'."),
    ],
)
def test_a_failed_connection_while_settling_is_unconfirmed(error: Exception) -> None:
    with pytest.raises(SettlementUnconfirmedError), lock_errors("m1"):
        raise error


def test_other_errors_pass_through() -> None:
    with pytest.raises(KeyError), lock_errors("m1"):
        raise KeyError("x")


# --- construction (no network) ------------------------------------------------------------------


async def test_namespace_sign_in_uses_default_azure_credential_and_close_releases_it() -> None:
    bus = AzureBus(load_azure_settings(servicebus_queue="q", servicebus_namespace="contracting"))
    assert isinstance(bus._credential, DefaultAzureCredential)
    await bus.close()  # nothing was opened: closes the client and the credential without a network


async def test_a_session_entity_refuses_messages_without_a_session_before_sending_any() -> None:
    settings = load_azure_settings(
        servicebus_queue="q", servicebus_connection_string=CONN, servicebus_sessions=True
    )
    bus = AzureBus(settings)
    try:
        with pytest.raises(ValueError, match="no session id"):
            await bus.publish([OutgoingMessage(b"{}", "m1", "acme"), OutgoingMessage(b"{}", "m2")])
    finally:
        await bus.close()
