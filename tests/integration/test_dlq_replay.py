"""Replaying dead letters through the real pipeline: local bus + the sandbox ERP, SQLite and PostgreSQL.

Nothing is written twice: not after the cause is fixed, not when the same selection is replayed
again, and not when the dead letter's write had in fact reached the ERP before a crash.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, cast

import aiohttp
import pytest

from config_db import clients, sync_log
from config_db.database import make_engine
from config_db.secrets import SecretBox
from contracts import parse_envelope
from providers.base import OutboundChange
from providers.generic_rest.sandbox import SandboxServer
from providers.generic_rest.sandbox.app import InjectedFailure
from tests.integration.buses import OffsetClock
from tests.integration.worker_rig import env
from worker.buses.base import OutgoingMessage
from worker.buses.local import LocalBus
from worker.db import Database
from worker.messaging.connections import ConnectionDirectory
from worker.messaging.dispatch import Dispatcher
from worker.messaging.retry import RetryPolicy
from worker.messaging.runner import RunStats, Worker
from worker.operators.dlq import DeadLetterOperations
from worker.operators.letters import Selection

KEY = "dlq-replay-test-key"
TOKEN = "tok-dlq-replay"
MAX_DELIVERIES = 3


@dataclass
class Rig:
    db: Database
    bus: LocalBus
    clock: OffsetClock
    sandbox: SandboxServer
    http: aiohttp.ClientSession

    def providers(self) -> ConnectionDirectory:
        return ConnectionDirectory(self.db, self.http, KEY)

    async def run(self) -> RunStats:
        policy = RetryPolicy(delays=(0.05,), inprocess_attempts=1, base_wait_s=0.01)
        worker = Worker(
            self.bus, Dispatcher(self.db, self.providers(), policy), concurrency=4, shutdown_grace_s=2
        )
        return await worker.run(until_idle=True)

    async def publish(self, *envs: dict[str, Any]) -> None:
        messages = [OutgoingMessage(json.dumps(e).encode(), f"t-{e['id']}", e["client_id"]) for e in envs]
        await self.bus.publish(messages)

    async def writes(self) -> dict[str, int]:
        writes: dict[str, int] = (await self.sandbox.stats())["writes"]
        return writes

    def actions(self, envelope_id: str) -> list[str]:
        rows = self.db.run_sync(lambda c: sync_log.entries(c, message_id=envelope_id))
        return [cast(str, r["action"]) for r in reversed(rows)]


@pytest.fixture
async def rig(db_url: str) -> AsyncIterator[Rig]:
    db = Database(make_engine(db_url))
    clock = OffsetClock()
    bus = LocalBus(db, lock_duration_s=5, max_delivery_count=MAX_DELIVERIES, clock=clock)
    async with SandboxServer(token=TOKEN) as sandbox, aiohttp.ClientSession() as http:

        def provision(conn: Any) -> None:
            clients.add_client(conn, "acme", "acme")
            credentials = SecretBox(KEY).encrypt({"token": TOKEN})
            stored = clients.StoredConnection("acme", "generic_rest", sandbox.base_url, {}, credentials, True)
            clients.set_connection(conn, stored)

        await db.run(provision)
        yield Rig(db, bus, clock, sandbox, http)
    await db.close()


async def test_dead_letters_replayed_after_the_fix_are_written_once(rig: Rig) -> None:
    rig.sandbox.sandbox.failures.append(
        InjectedFailure(status=422, remaining=4, error="customer group missing")
    )
    await rig.publish(*(env(n) for n in range(4)))
    assert (await rig.run()).counts == {"dead:ProviderRejected": 4}
    assert (await rig.bus.stats()).dead_lettered_by_reason == {"ProviderRejected": 4}
    # The cause is fixed (the injected failures are used up); the operator replays everything.
    ops = DeadLetterOperations(rig.db, rig.bus, operator="alice")
    letters = await ops.select(Selection(reason="ProviderRejected"))
    assert [(await ops.replay(x)).status for x in letters] == ["replayed"] * 4

    assert (await rig.run()).counts == {"created": 4}
    assert await rig.writes() == {f"customer/acme-c{n}": 1 for n in range(4)}
    assert rig.actions("acme-e0") == ["pending", "failed", "replayed", "pending", "created"]

    # The same (stale) selection again, by someone else: nothing is resent, nothing written.
    again = DeadLetterOperations(rig.db, rig.bus, operator="bob")
    assert {(await again.replay(x)).status for x in letters} == {"skipped"}
    assert (await rig.run()).processed == 0
    assert await rig.writes() == {f"customer/acme-c{n}": 1 for n in range(4)}


async def test_dead_lettered_after_its_write_reached_the_erp_is_replayed_without_a_second_write(
    rig: Rig,
) -> None:
    envelope = env(7)
    # A first attempt whose write reached the ERP, then a crash before the outcome was journalled ...
    parsed = parse_envelope(json.dumps(envelope))
    provider = await rig.providers().provider_for("acme")
    await provider.push(OutboundChange(parsed.id, parsed.entity, parsed.action, parsed.cw_id, parsed.data))
    intent = sync_log.Entry(
        direction="outbound",
        action="pending",
        message_id=parsed.id,
        client_id="acme",
        provider="generic_rest",
        entity="customer",
        cw_id=parsed.cw_id,
    )
    await rig.db.run(lambda c: sync_log.record(c, intent))
    # ... and every redelivery crashed too, until MaxDeliveryCount dead-lettered it.
    await rig.publish(envelope)
    for _ in range(MAX_DELIVERIES):
        assert len(await rig.bus.receive(1, 0)) == 1
        rig.clock.offset += 10  # the lock expires unsettled: the process died
    assert await rig.bus.receive(1, 0) == []
    [letter] = await DeadLetterOperations(rig.db, rig.bus).select(Selection())
    assert letter.dead.reason == "MaxDeliveryCountExceeded"

    outcome = await DeadLetterOperations(rig.db, rig.bus, operator="alice").replay(letter)
    stats = await rig.run()

    assert outcome.status == "replayed" and stats.processed == 1
    assert await rig.writes() == {"customer/acme-c7": 1}
    assert rig.actions("acme-e7") == ["pending", "replayed", "pending", stats.counts.most_common(1)[0][0]]
    rows = rig.db.run_sync(lambda c: sync_log.entries(c, message_id="acme-e7"))
    assert rows[1]["detail"] == "recovering: an earlier attempt may have reached the ERP"


async def test_a_stale_dead_letter_replayed_is_journalled_superseded_and_never_overwrites(rig: Rig) -> None:
    def version(n: int, name: str, org: str | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {"id": "acme-c1", "number": "1001", "name": name}
        if org is not None:
            data["org_number"] = org
        return {**env(1), "id": f"acme-v{n}", "type": "customer.updated", "sequence": n, "data": data}

    # v1 is refused by the ERP (a bad organisation number) and dead-lettered; v2 is applied.
    await rig.publish(version(1, "Acme v1", org="123456789"))
    assert (await rig.run()).counts == {"dead:ProviderRejected": 1}
    await rig.publish(version(2, "Acme v2"))
    assert (await rig.run()).counts == {"created": 1}, "an update of a record the ERP lacks creates it"
    ops = DeadLetterOperations(rig.db, rig.bus, operator="alice")
    letters = await ops.select(Selection())
    [preview] = await ops.preview(letters)
    assert preview["superseded"] == "sequence 1 is older than 2, already applied"

    outcome = await ops.replay(letters[0])
    assert outcome.status == "replayed" and "superseded by a newer change" in outcome.detail
    assert (await rig.run()).counts == {"superseded": 1}
    record = rig.sandbox.sandbox.store.get("customer", "acme-c1")
    assert record is not None and record.data["name"] == "Acme v2", "the stale replay wrote nothing"
    assert rig.actions("acme-v1")[-1] == "superseded"


async def test_a_body_nested_100000_deep_is_dead_lettered_and_the_operator_tools_still_work(rig: Rig) -> None:
    body = b"[" * 100_000 + b"]" * 100_000
    await rig.bus.publish([OutgoingMessage(body, "t-deep", "acme")])
    assert (await rig.run()).counts == {"dead:InvalidEnvelope": 1}
    ops = DeadLetterOperations(rig.db, rig.bus, operator="alice")
    [letter] = await ops.select(Selection())
    assert letter.envelope is None and letter.client_id == "acme"
    shown = await ops.show("t-deep")
    assert shown is not None and shown["body"].startswith("[[[[") and "more bytes" in shown["body"]
    assert (await ops.preview([letter]))[0]["superseded"] is None
    assert (await rig.bus.stats()).dead_lettered == 1
    assert (await ops.purge(letter)).status == "purged"
