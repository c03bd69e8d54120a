"""The webhooks publisher end to end in-process, on every bus: CW events pushed to the sandbox ERP
are delivered to a subscriber that verifies each signature with the ``standardwebhooks`` library
and fails, throttles and times out on purpose. Nothing is lost, a record's deliveries arrive in
order, a failing subscriber is paused with its backlog kept, and a dead letter is replayable."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from config_db import subscriptions
from tests.integration.publishing import (
    ADMIN,
    FAST,
    arrival_order,
    run_until,
    service,
    statuses,
    subscribe,
    worker,
)
from tests.integration.webhook_receiver import Receiver, always
from tests.integration.worker_rig import Rig, env
from worker.messaging.runner import Worker
from worker.operators.dlq import DeadLetterOperations
from worker.operators.failures import Failures
from worker.operators.letters import Selection
from worker.publisher import Sender, publishing

RECORDS = 4
CHANGES = 4


def events(offset: int = 0) -> list[dict[str, Any]]:
    """Each record created, then updated: ``sequence`` orders a record's events."""
    out = []
    for change in range(CHANGES):
        for record in range(RECORDS):
            e = env(100 * (change + offset) + record, name=f"C{record} v{change + offset}")
            e["data"]["id"] = f"acme-r{record}"
            e["type"] = "customer.created" if change + offset == 0 else "customer.updated"
            e["sequence"] = change + offset
            out.append(e)
    return out


def troublesome(receiver: Receiver, webhook_id: str, n: int) -> Any:
    """Deliveries in turn (by first arrival): fail once, throttle once, time out once, fail twice,
    succeed at once, succeed at once."""
    first_seen = list(dict.fromkeys([c.webhook_id for c in receiver.calls] + [webhook_id]))
    scripts: list[list[int | str]] = [[500], [429], ["slow"], [503, 500], [], []]
    script = scripts[first_seen.index(webhook_id) % 6]
    return script[n - 1] if n <= len(script) else 200


async def test_every_event_delivered_signed_and_in_order_per_record(rig: Rig) -> None:
    async with Receiver(behave=troublesome, slow_s=1.0) as receiver:
        issued = await subscribe(rig, receiver, ("customer.*", "invoice.created"), fields=["name"])
        sent = events()
        await rig.publish(*sent)
        sender = Sender(FAST)
        try:

            def finished() -> bool:
                found = statuses(rig)
                return sum(found.values()) > 0 and set(found) == {"delivered"}

            await run_until(worker(rig, sender), finished, timeout_s=60)
        finally:
            await sender.close()

    # Every event that reached the ERP (an older one overtaken on an unordered bus is superseded,
    # and never published) is delivered; each call verified; nothing given up.
    pushed = rig.db.run_sync(
        lambda c: (
            c.execute(text("SELECT message_id FROM sync_log WHERE action IN ('created', 'updated')"))
            .scalars()
            .all()
        )
    )
    delivered = {c.event_id for c in receiver.delivered()}
    assert delivered == set(pushed) and len(delivered) >= RECORDS
    assert statuses(rig) == {"delivered": len(delivered)}
    assert {c.webhook_id for c in receiver.calls} == {c.webhook_id for c in receiver.delivered()}
    assert {a for c in receiver.calls for a in [c.answered]} >= {200, 500, 429, "slow"}
    # A record's deliveries never overtake each other, retries included.
    assert all(order == sorted(order) for order in arrival_order(receiver.calls).values())
    # Standard Webhooks' shape, cut to the fields asked for (and the id).
    first = receiver.delivered()[0].body
    assert set(first) >= {"type", "timestamp", "data", "client_id", "event_id", "record_id"}
    assert set(first["data"]) == {"id", "name"}
    assert issued.subscription["events"] == ["customer.*", "invoice.created"]


@pytest.mark.parametrize(
    "rig", ["local-sqlite", pytest.param("local-postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_a_failing_subscriber_is_paused_with_its_backlog_kept_then_resumed(rig: Rig) -> None:
    pausing = FAST.model_copy(update={"pause_after_failures": 3})
    async with Receiver(behave=always(500)) as receiver:
        issued = await subscribe(rig, receiver)
        sub_id = issued.subscription["id"]
        await rig.publish(*events()[: 2 * RECORDS])
        sender = Sender(pausing)

        def paused() -> bool:
            sub = rig.db.run_sync(lambda c: subscriptions.get(c, sub_id))
            found = statuses(rig)
            return sub is not None and sub.paused and found.get("parked", 0) == 2 * RECORDS

        try:
            await run_until(worker(rig, sender), paused)
            sub = rig.db.run_sync(lambda c: subscriptions.get(c, sub_id))
            assert sub is not None and "3 failed attempts in a row" in (sub.paused_reason or "")
            assert (await rig.bus.stats()).active == 0, (
                "nothing left on the bus: the backlog waits in the log"
            )
            # Events handled while it is paused join the backlog.
            await rig.publish(*events(offset=2)[: 2 * RECORDS])
            await run_until(worker(rig, sender), lambda: statuses(rig) == {"parked": 4 * RECORDS})
            calls_while_paused = len(receiver.calls)

            receiver.behave = always(200)
            resumed = await service(rig, pausing).resume(ADMIN, sub_id)
            assert resumed["status"] == "active" and resumed["woken"] == RECORDS
            await run_until(worker(rig, sender), lambda: statuses(rig) == {"delivered": 4 * RECORDS})
        finally:
            await sender.close()
    assert calls_while_paused == 3, "paused after the third failure: no call since"
    assert len({c.event_id for c in receiver.delivered()}) == 4 * RECORDS
    assert all(order == sorted(order) for order in arrival_order(receiver.delivered()).values())


@pytest.mark.parametrize("rig", ["local-sqlite", "azure"], indirect=True)
async def test_410_pauses_the_subscription_and_a_dead_letter_is_replayable(rig: Rig) -> None:
    giving_up = FAST.model_copy(update={"retry_for_s": 0.3})
    async with Receiver(behave=always(410)) as receiver:
        issued = await subscribe(rig, receiver)
        sub_id = issued.subscription["id"]
        await rig.publish(env(1))
        sender = Sender(giving_up)
        try:
            await run_until(worker(rig, sender), lambda: statuses(rig) == {"parked": 1})
            sub = rig.db.run_sync(lambda c: subscriptions.get(c, sub_id))
            assert sub is not None and sub.paused and "410 Gone" in (sub.paused_reason or "")

            receiver.behave = always(500)
            await service(rig, giving_up).resume(ADMIN, sub_id)

            async def dead() -> bool:
                return len(await rig.bus.dead_letters()) == 1 and statuses(rig) == {"dead": 1}

            await run_until(worker(rig, sender), dead)
            [letter] = await DeadLetterOperations(rig.db, rig.bus).select(Selection(type="webhook.delivery"))
            assert letter.dead.reason == "RetriesExhausted" and letter.client_id == "acme"
            [dry] = await Failures(DeadLetterOperations(rig.db, rig.bus)).dry_run([letter])
            assert dry["would"] == "deliver the webhook again"
            assert "HTTP 500" in letter.dead.description and receiver.url in letter.dead.description

            receiver.behave = always(200)
            outcome = await DeadLetterOperations(rig.db, rig.bus, operator="tester").replay(letter)
            assert outcome.status == "replayed"
            await run_until(worker(rig, sender), lambda: statuses(rig) == {"delivered": 1})
        finally:
            await sender.close()
    assert [c.answered for c in receiver.calls][:1] == [410] and receiver.calls[-1].answered == 200
    log = await service(rig).log(sub_id)
    assert log[0]["status"] == "delivered" and log[0]["last_status"] == 200 and log[0]["latency_ms"] >= 0


@pytest.mark.parametrize("rig", ["local-sqlite"], indirect=True)
async def test_a_replayed_delivery_older_than_one_the_subscriber_got_is_superseded(rig: Rig) -> None:
    giving_up = FAST.model_copy(update={"retry_for_s": 0.2})
    async with Receiver(behave=always(500)) as receiver:
        issued = await subscribe(rig, receiver)
        sender = Sender(giving_up)
        try:
            await rig.publish(env(1, name="first"))
            await run_until(worker(rig, sender), lambda: statuses(rig) == {"dead": 1})
            receiver.behave = always(200)
            newer = env(2, name="second")
            newer["data"]["id"], newer["type"] = "acme-c1", "customer.updated"
            await rig.publish(newer)
            await run_until(worker(rig, sender), lambda: statuses(rig) == {"dead": 1, "delivered": 1})
            ops = DeadLetterOperations(rig.db, rig.bus)
            [group] = await Failures(ops).groups()
            assert (group.reason, group.provider) == ("RetriesExhausted", "webhooks")
            [dry] = await Failures(ops).dry_run(group.letters)
            assert (
                dry["would"] == "complete without sending: the subscriber has a newer delivery of the record"
            )
            assert (await ops.replay(group.letters[0])).status == "replayed"
            await run_until(worker(rig, sender), lambda: statuses(rig) == {"superseded": 1, "delivered": 1})
        finally:
            await sender.close()
    assert [c.body["data"]["name"] for c in receiver.delivered()] == ["second"], "never the older after"
    log = await service(rig).log(issued.subscription["id"], status="superseded")
    assert "newer delivery of the record" in log[0]["last_error"]


@pytest.mark.parametrize("rig", ["local-sqlite"], indirect=True)
async def test_a_secret_the_key_cannot_read_pauses_the_subscription_and_dead_letters_nothing(
    rig: Rig,
) -> None:
    async with Receiver() as receiver:
        issued = await subscribe(rig, receiver)
        sub_id = issued.subscription["id"]
        await rig.publish(env(1))
        # Delivered exactly once is the point here: no timeout (and at-least-once redelivery) on a
        # loaded machine.
        patient = FAST.model_copy(update={"timeout_s": 10.0})
        sender = Sender(patient)
        try:
            wrong = Worker(
                rig.bus,
                publishing(
                    rig.pipeline(), rig.bus, sender, secret_key="another-key", lease_s=10, settings=patient
                ),
                concurrency=4,
            )
            await run_until(wrong, lambda: statuses(rig) == {"parked": 1})
            sub = rig.db.run_sync(lambda c: subscriptions.get(c, sub_id))
            assert (
                sub is not None
                and sub.paused
                and "fix CWI_SECRET_KEY, then resume" in (sub.paused_reason or "")
            )
            assert receiver.calls == [] and await rig.bus.dead_letters() == []
            await service(rig).resume(ADMIN, sub_id)
            await run_until(worker(rig, sender), lambda: statuses(rig) == {"delivered": 1})
        finally:
            await sender.close()
    assert len(receiver.delivered()) == 1
