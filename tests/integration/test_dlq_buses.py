"""Dead-letter operations on every bus: the local bus, and Azure Service Bus (queue and sessions)
through the real SDK against the AMQP test peer. Replay resends a clean copy once, whatever runs
concurrently or stops halfway; purge journals each message."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from config_db import sync_log
from config_db.database import make_engine
from tests.databases import sqlite_copy
from tests.integration.buses import LOCK_S, MAX_DELIVERIES, QUEUE, SESSION_QUEUE, OffsetClock, peer_entities
from tests.integration.worker_rig import env
from tests.servicebus_peer import ServiceBusPeer
from worker.buses.azure import AzureBus
from worker.buses.base import Delivery, OutgoingMessage
from worker.buses.local import LocalBus
from worker.db import Database
from worker.operators.dlq import DeadLetterOperations, replay_id
from worker.operators.letters import Selection
from worker.settings import AzureBusSettings, load_azure_settings


class Halted(Exception):
    """Stands in for a crash at a replay step."""


@dataclass
class Rig:
    name: str
    bus: LocalBus | AzureBus
    db: Database
    settings: AzureBusSettings | None = None

    def ops(self, operator: str = "alice", **kwargs: Any) -> DeadLetterOperations:
        return DeadLetterOperations(self.db, self.bus, operator=operator, **kwargs)

    def journal(self, action: str) -> list[dict[str, Any]]:
        rows = self.db.run_sync(lambda c: sync_log.entries(c, limit=10_000))
        return [r for r in rows if r["direction"] == "operator" and r["action"] == action]


async def dead_letter(rig: Rig, envs: list[dict[str, Any]], reason: str = "AuthenticationFailed") -> None:
    """Publish ``envs`` and dead-letter each as the worker would."""
    await rig.bus.publish(
        [
            OutgoingMessage(json.dumps(e).encode(), f"t-{e['id']}", e["client_id"], {"cwi-attempt": 2})
            for e in envs
        ]
    )
    done = 0
    for _ in range(50):
        for delivery in await rig.bus.receive(10, 1.0):
            await rig.bus.dead_letter(delivery, reason, f"{reason} for {delivery.message_id}")
            done += 1
        if done == len(envs):
            return
    raise AssertionError(f"dead-lettered only {done} of {len(envs)}")


async def drain(rig: Rig, expected: int) -> list[Delivery]:
    """Receive and complete everything active: the copies a replay put back. On Service Bus with a
    receiver of its own: the rig's may hold a session accepted long ago whose lock has run out."""
    fresh = rig.settings is not None and rig.settings.servicebus_sessions
    bus = _azure_bus(rig.settings) if fresh and rig.settings is not None else rig.bus
    got: list[Delivery] = []
    empty = 0
    # A busy machine (the suite runs in parallel) may take more than a receive's wait to attach a
    # session receiver: keep going until the expected copies came or 20 s passed, then until quiet.
    deadline = asyncio.get_running_loop().time() + 20
    try:
        while empty < 3 or (len(got) < expected and asyncio.get_running_loop().time() < deadline):
            batch = await bus.receive(10, 0.3 if len(got) >= expected else 1.0)
            empty = 0 if batch else empty + 1
            for delivery in batch:
                await bus.complete(delivery)
            got.extend(batch)
    finally:
        if bus is not rig.bus:
            await bus.close()
    return got


def _azure_bus(settings: AzureBusSettings) -> AzureBus:
    return AzureBus(
        settings, lock_duration_s=LOCK_S, retry_total=1, retry_backoff_s=0.1, poll_s=0.5, accept_wait_s=1.0
    )


@pytest.fixture
async def rig(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_templates: dict[str, Path]
) -> AsyncIterator[Rig]:
    db = Database(make_engine(sqlite_copy(sqlite_templates["schema"], tmp_path)))
    kind: str = request.param
    if kind == "local":
        bus: LocalBus | AzureBus = LocalBus(
            db, lock_duration_s=LOCK_S, max_delivery_count=MAX_DELIVERIES, clock=OffsetClock()
        )
        yield Rig(kind, bus, db)
        await bus.close()
    else:
        sessions = kind == "azure-sessions"
        with ServiceBusPeer(entities=peer_entities()) as peer:
            settings = load_azure_settings(
                servicebus_queue=SESSION_QUEUE if sessions else QUEUE,
                servicebus_connection_string=peer.connection_string,
                servicebus_sessions=sessions,
                servicebus_session_idle_s=0.3,
            )
            bus = _azure_bus(settings)
            await bus.open()
            yield Rig(kind, bus, db, settings)
            await bus.close()
    await db.close()


@pytest.mark.parametrize("rig", ["local", "azure-sessions"], indirect=True)
async def test_replay_resends_a_clean_copy_and_journals_who(rig: Rig) -> None:
    envs = [env(1), env(2, "globex")]
    await dead_letter(rig, envs)
    letters = await rig.ops().select(Selection())
    assert {x.envelope_id for x in letters} == {"acme-e1", "globex-e2"}

    outcomes = [await rig.ops("alice").replay(x) for x in letters]

    assert [o.status for o in outcomes] == ["replayed", "replayed"]
    assert await rig.bus.dead_letters() == []
    copies = await drain(rig, 2)
    assert sorted(d.message_id for d in copies) == sorted(replay_id(f"t-{e['id']}") for e in envs)
    for copy in copies:
        body = json.loads(copy.body)
        assert body["source"] == "replay" and body["id"] in {"acme-e1", "globex-e2"}
        assert copy.properties["cwi-replay-of"] == f"t-{body['id']}"
        assert copy.properties["cwi-replayed-by"] == "alice"
        assert not {"DeadLetterReason", "DeadLetterErrorDescription", "cwi-attempt"} & set(copy.properties)
        assert copy.session_id == body["client_id"]
    journal = rig.journal("replayed")
    assert sorted(r["message_id"] for r in journal) == ["acme-e1", "globex-e2"]
    assert all(json.loads(r["detail"])["operator"] == "alice" for r in journal)


@pytest.mark.parametrize("rig", ["local", "azure"], indirect=True)
async def test_the_same_selection_twice_and_two_operators_at_once_resend_each_once(rig: Rig) -> None:
    envs = [env(n, client) for n in range(3) for client in ("acme", "globex")]
    await dead_letter(rig, envs)
    letters = await rig.ops().select(Selection())
    alice, bob = rig.ops("alice"), rig.ops("bob")

    async def replay_all(ops: DeadLetterOperations) -> list[str]:
        return [(await ops.replay(x)).status for x in letters]

    first, second = await asyncio.gather(replay_all(alice), replay_all(bob))
    again = await replay_all(rig.ops("carol"))  # the same (now stale) selection once more

    statuses = list(zip(first, second, again, strict=True))
    assert all(sorted(s) == ["replayed", "skipped", "skipped"] for s in statuses), statuses
    assert await rig.ops().select(Selection()) == []
    copies = await drain(rig, len(envs))
    assert sorted(json.loads(d.body)["id"] for d in copies) == sorted(e["id"] for e in envs)
    assert len(rig.journal("replayed")) == len(envs)


@pytest.mark.parametrize(
    ("rig", "stage"),
    [
        ("local", "claimed"),
        ("local", "sent"),
        ("local", "resent"),
        ("azure", "sent"),  # the copy is acknowledged, the dead letter not yet removed
        ("azure-sessions", "sent"),
    ],
    indirect=["rig"],
)
async def test_a_replay_stopped_at_any_step_then_rerun_replays_each_exactly_once(
    rig: Rig, stage: str
) -> None:
    envs = [env(n) for n in range(3)]
    await dead_letter(rig, envs)
    reached: list[str] = []

    def crash_on_second(at: str) -> None:
        reached.append(at)
        if at == stage and reached.count(stage) == 2:
            raise Halted(at)

    crashing = rig.ops("alice", halt=crash_on_second)
    letters = await crashing.select(Selection())
    with pytest.raises(Halted):  # at "sent" the bus error comes back as a failed outcome
        for letter in letters:
            outcome = await crashing.replay(letter)
            if outcome.status == "failed":
                raise Halted(outcome.detail)
    # The crashed owner's claim is still open: a rerun takes it over once its lease is over.
    rerun = rig.ops("alice", lease_s=0)
    remaining = await rerun.select(Selection())
    outcomes = [await rerun.replay(x) for x in remaining]

    assert {o.status for o in outcomes} == {"replayed"}
    assert await rig.bus.dead_letters() == []
    copies = await drain(rig, len(envs))
    assert sorted(json.loads(d.body)["id"] for d in copies) == sorted(e["id"] for e in envs)
    assert len(rig.journal("replayed")) == len(envs)


@pytest.mark.parametrize("rig", ["local", "azure"], indirect=True)
async def test_purge_journals_each_with_its_body_and_filters_select(rig: Rig) -> None:
    await dead_letter(rig, [env(1), env(2, type_="customer.updated")], reason="MappingError")
    await dead_letter(rig, [env(3, "globex")], reason="UnknownClient")
    ops = rig.ops("dave")
    assert [x.envelope_id for x in await ops.select(Selection(client="globex"))] == ["globex-e3"]
    assert [x.envelope_id for x in await ops.select(Selection(type="customer.updated"))] == ["acme-e2"]
    assert len(await ops.select(Selection(reason="MappingError"))) == 2
    [letter] = await ops.select(Selection(ids=("t-acme-e1",)))
    shown = await ops.show("t-acme-e1")
    assert shown is not None and shown["envelope"]["id"] == "acme-e1" and shown["reason"] == "MappingError"
    assert await rig.bus.find_dead_letter("t-nope") is None

    assert (await ops.purge(letter)).status == "purged"
    assert (await ops.purge(letter)).status == "skipped"

    assert sorted(x.envelope_id or "" for x in await ops.select(Selection())) == ["acme-e2", "globex-e3"]
    [purged] = rig.journal("purged")
    detail = json.loads(purged["detail"])
    assert detail["operator"] == "dave" and json.loads(detail["body"])["id"] == "acme-e1"
