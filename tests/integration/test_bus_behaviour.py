"""One behavioural suite for every bus: the local bus, and Azure Service Bus through the real SDK.

``azure`` and ``azure-sessions`` run the adapter against the AMQP test peer (tests/servicebus_peer);
the ``*-connected`` params run it against a real namespace or Microsoft's emulator (see
tests/integration/buses.py: ``CWI_TEST_SERVICEBUS_CONNECTION_STRING``, or the emulator in Docker).
Here: publishing, peek-lock, delayed retries, dead letters, stats and a topic subscription; locks,
ordering and faults: ``test_bus_behaviour_locks.py``; the harness: ``bus_harness.py``.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.integration.bus_harness import SESSIONLESS, Harness, bus, message, nothing_left, receive_n
from tests.integration.buses import LOCK_S, MAX_DELIVERIES
from tests.servicebus_peer import EntityOptions, ServiceBusPeer
from worker.buses.azure import AzureBus, StatsUnavailableError
from worker.buses.base import LockLostError, OutgoingMessage
from worker.buses.local import LocalBus
from worker.settings import load_azure_settings

__all__ = ["bus"]  # the fixture: each bus in turn


# --- peek-lock ----------------------------------------------------------------------------------


async def test_publish_receive_complete(bus: Harness) -> None:
    sent = [message(f"m{i}", f"client-{i}", envelope_id=f"e{i}", type="invoice.created") for i in range(3)]
    await bus.bus.publish(sent)
    got = sorted(await receive_n(bus, 3), key=lambda d: d.message_id)
    assert [(d.message_id, d.session_id, d.body, d.delivery_count) for d in got] == [
        (m.message_id, m.session_id, m.body, 1) for m in sent
    ]
    assert [dict(d.properties) for d in got] == [dict(m.properties) for m in sent]
    await asyncio.gather(*(bus.bus.complete(d) for d in got))
    assert await nothing_left(bus)
    with pytest.raises(LockLostError):  # settled once, never twice
        await bus.bus.complete(got[0])


@pytest.mark.parametrize("bus", SESSIONLESS, indirect=True)
async def test_publish_splits_large_sends_into_batches(bus: Harness) -> None:
    count = 100  # 100 x 4 KB: more than one 256 KB batch
    body = json.dumps({"pad": "x" * 4000}).encode()
    await bus.bus.publish([OutgoingMessage(body, f"m{i}", f"client-{i % 5}") for i in range(count)])
    if bus.peer is not None:
        assert bus.peer.active_count(bus.entity) == count
    elif isinstance(bus.bus, LocalBus):
        assert (await bus.bus.stats()).active == count


# --- delayed retries and dead letters -----------------------------------------------------------


async def test_a_delayed_retry_comes_back_after_its_delay_with_the_new_properties(bus: Harness) -> None:
    await bus.bus.publish([message("m1", "acme", envelope_id="e1", **{"cwi-attempt": 1})])
    [original] = await receive_n(bus, 1)
    await bus.bus.reschedule(original, 1.5, {"envelope_id": "e1", "cwi-attempt": 2})
    if bus.peer is not None and not bus.orders_sessions:
        assert bus.peer.scheduled_count(bus.entity) == 1, "without sessions: a scheduled copy"
    assert not await bus.bus.receive(10, 0.3)
    await bus.elapse(1.5)
    [again] = await receive_n(bus, 1)
    if bus.orders_sessions:
        # Held in place: the same message, still first in its session.
        assert again.message_id == original.message_id
    else:
        assert again.message_id != original.message_id
    assert (again.body, again.session_id) == (original.body, "acme")
    assert dict(again.properties) == {"envelope_id": "e1", "cwi-attempt": 2}
    await bus.bus.complete(again)
    assert await nothing_left(bus)


async def test_a_delayed_retry_holds_its_session_and_no_other(bus: Harness) -> None:
    """Per-client order: the client's later messages wait for the retried one, others go on."""
    if not bus.orders_sessions:
        pytest.skip("only session buses keep a client's order")
    await bus.bus.publish([message("a1", "acme"), message("a2", "acme"), message("g1", "globex")])
    got = {d.message_id: d for d in await receive_n(bus, 2)}
    assert set(got) == {"a1", "g1"}
    await bus.bus.reschedule(got["a1"], 1.5, {"cwi-attempt": 1})
    await bus.bus.complete(got["g1"])
    await bus.bus.publish([message("g2", "globex")])
    [other] = await receive_n(bus, 1)
    assert other.message_id == "g2", "another client is not held up"
    await bus.bus.complete(other)
    assert not await bus.bus.receive(10, 0.3), "a2 must not overtake a1"
    await bus.elapse(1.5)
    [first] = await receive_n(bus, 1)
    assert first.message_id == "a1"
    await bus.bus.complete(first)
    [second] = await receive_n(bus, 1)
    assert second.message_id == "a2"
    await bus.bus.complete(second)


async def test_dead_letters_keep_their_reason_and_can_be_resent_or_purged(bus: Harness) -> None:
    await bus.bus.publish(
        [message("m1", "acme", envelope_id="e1"), message("m2", "globex", envelope_id="e2")]
    )
    got = {d.message_id: d for d in await receive_n(bus, 2)}
    await bus.bus.dead_letter(got["m1"], "ProviderRejected", "400 from the ERP: VAT number is invalid")
    await bus.bus.dead_letter(got["m2"], "RetriesExhausted", "gave up")
    assert await nothing_left(bus)
    by_id = {letter.message_id: letter for letter in await bus.bus.dead_letters()}
    letter = by_id["m1"]
    assert (letter.reason, letter.description) == (
        "ProviderRejected",
        "400 from the ERP: VAT number is invalid",
    )
    assert (letter.body, letter.session_id, dict(letter.properties)) == (
        got["m1"].body,
        "acme",
        {"envelope_id": "e1"},
    )
    assert by_id["m2"].reason == "RetriesExhausted"

    assert await bus.bus.resend_dead_letter(letter.sequence_number, b'{"id":"m1"}', {"replayed": True})
    assert await bus.bus.purge_dead_letter(by_id["m2"].sequence_number)
    assert not await bus.bus.purge_dead_letter(by_id["m2"].sequence_number)
    assert await bus.bus.dead_letters() == []
    [replayed] = await receive_n(bus, 1)
    assert replayed.message_id != "m1"
    assert (replayed.body, replayed.session_id, dict(replayed.properties)) == (
        b'{"id":"m1"}',
        "acme",
        {"replayed": True},
    )
    await bus.bus.complete(replayed)


async def test_abandon_raises_the_count_until_max_delivery_count_dead_letters(bus: Harness) -> None:
    await bus.bus.publish([message("m1", "acme")])
    for attempt in range(1, bus.max_deliveries + 1):
        [delivery] = await receive_n(bus, 1)
        assert (delivery.message_id, delivery.delivery_count) == ("m1", attempt)
        await bus.bus.abandon(delivery)
    assert await nothing_left(bus)
    [letter] = await bus.bus.dead_letters()
    assert (letter.message_id, letter.reason) == ("m1", "MaxDeliveryCountExceeded")


@pytest.mark.parametrize("bus", SESSIONLESS, indirect=True)
async def test_stats(bus: Harness) -> None:
    await bus.bus.publish([message("m1", "acme"), message("m2", "globex")])
    [delivery, *_] = await receive_n(bus, 1)
    await bus.bus.dead_letter(delivery, "UnknownClient", "no connection for acme")
    if bus.peer is not None:
        # The peer, like a namespace reached with Listen/Send rights only, has no management endpoint.
        with pytest.raises(StatsUnavailableError, match="management endpoint cannot be reached: "):
            await bus.bus.stats()
        return
    stats = await bus.bus.stats()
    assert (stats.active, stats.dead_lettered) == (1, 1)
    assert stats.dead_lettered_by_reason == {"UnknownClient": 1}


async def test_a_topic_subscription_works_like_a_queue() -> None:
    entities = {"events": EntityOptions(subscriptions=("worker", "audit"), lock_duration_s=LOCK_S)}
    with ServiceBusPeer(entities=entities) as peer:
        settings = load_azure_settings(
            servicebus_topic="events",
            servicebus_subscription="worker",
            servicebus_connection_string=peer.connection_string,
        )
        bus = AzureBus(settings, lock_duration_s=LOCK_S, retry_total=1, retry_backoff_s=0.1, poll_s=0.5)
        try:
            await bus.open()
            await bus.publish([message("m1", "acme", envelope_id="e1")])
            [delivery] = await receive_n(Harness("topic", bus, False, LOCK_S, MAX_DELIVERIES), 1)
            assert (delivery.message_id, dict(delivery.properties)) == ("m1", {"envelope_id": "e1"})
            await bus.reschedule(delivery, 60, {"envelope_id": "e1", "cwi-attempt": 2})
        finally:
            await bus.close()
        # The retry went to the topic, so every subscription got a copy (as on Service Bus); the copy
        # names the subscription it is for, so that the others' rules can leave it out.
        assert peer.active_count("events/Subscriptions/worker") == 0
        [retry] = peer.messages("events/Subscriptions/worker")
        assert (retry.state, retry.application_properties) == (
            "scheduled",
            {"envelope_id": "e1", "cwi-attempt": 2, "cwi-retry-for": "worker"},
        )
        assert peer.scheduled_count("events/Subscriptions/audit") == 1
