"""The worker end to end in-process: local bus + pipeline + the real sandbox ERP, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from config_db import clients, sync_log
from config_db.database import make_engine
from config_db.secrets import SecretBox
from providers.generic_rest.sandbox import SandboxServer
from worker.buses.base import OutgoingMessage
from worker.buses.local import LocalBus
from worker.connections import ProviderDirectory
from worker.db import Database
from worker.pipeline import Pipeline
from worker.retry import RetryPolicy
from worker.runner import Worker

KEY = "worker-test-key"
TOKEN = "tok-worker-test"


@dataclass
class Rig:
    db: Database
    bus: LocalBus
    sandbox: SandboxServer
    http: aiohttp.ClientSession

    def worker(
        self, *, concurrency: int = 8, grace_s: float = 5.0, delays: tuple[float, ...] = (0.2, 0.2)
    ) -> Worker:
        policy = RetryPolicy(delays=delays, inprocess_attempts=2, base_wait_s=0.01)
        pipeline = Pipeline(self.db, ProviderDirectory(self.db, self.http, KEY), policy)
        return Worker(self.bus, pipeline, concurrency=concurrency, shutdown_grace_s=grace_s)

    async def publish(self, *envs: dict[str, Any]) -> None:
        await self.bus.publish(
            [
                OutgoingMessage(json.dumps(e).encode(), f"t-{e['id']}-{i}", e["client_id"])
                for i, e in enumerate(envs)
            ]
        )

    async def writes(self) -> dict[str, int]:
        stats = await self.sandbox.stats()
        writes: dict[str, int] = stats["writes"]
        return writes


def env(n: int, client: str = "acme", type_: str = "customer.created", **data: Any) -> dict[str, Any]:
    record = {"id": f"{client}-c{n % 1000}", "number": str(1000 + n % 1000), "name": f"Customer {n}", **data}
    return {
        "id": f"{client}-e{n}",
        "client_id": client,
        "type": type_,
        "source": "frontend",
        "occurred_at": "2026-11-23T10:00:00Z",
        "data": record,
    }


@pytest.fixture
async def rig(db_url: str) -> AsyncIterator[Rig]:
    db = Database(make_engine(db_url))
    bus = LocalBus(db, lock_duration_s=5, max_delivery_count=3)
    async with SandboxServer(token=TOKEN) as sandbox, aiohttp.ClientSession() as http:

        def provision(conn: Any) -> None:
            for client in ("acme", "globex"):
                clients.add_client(conn, client, client)
                credentials = SecretBox(KEY).encrypt({"token": TOKEN})
                stored = clients.StoredConnection(
                    client, "generic_rest", sandbox.base_url, {}, credentials, True
                )
                clients.set_connection(conn, stored)

        await db.run(provision)
        yield Rig(db, bus, sandbox, http)
    await db.close()


async def test_publish_process_complete(rig: Rig) -> None:
    await rig.publish(*(env(n) for n in range(20)), *(env(n, "globex") for n in range(20)))
    stats = await rig.worker().run(until_idle=True)
    assert stats.counts == {"created": 40}
    assert len(await rig.writes()) == 40 and set((await rig.writes()).values()) == {1}
    assert (await rig.bus.stats()).active == 0


async def test_transient_failure_is_retried_later_and_succeeds(rig: Rig) -> None:
    rig.sandbox.sandbox.failures.append(_failure(503, 2))  # both in-process attempts fail
    await rig.publish(env(1))
    worker = rig.worker()
    first = await worker.run(until_idle=True)
    assert first.counts == {"retry": 1}
    assert (await rig.bus.stats()).scheduled == 1
    await asyncio.sleep(0.3)
    second = await rig.worker().run(until_idle=True)
    assert second.counts == {"created": 1}
    log = rig.db.run_sync(lambda c: sync_log.entries(c, message_id="acme-e1"))
    assert [e["action"] for e in reversed(log)] == ["pending", "retry", "pending", "created"]
    assert log[1]["detail"] == "recovering: an earlier attempt may have reached the ERP"


async def test_retries_exhausted_dead_letters(rig: Rig) -> None:
    rig.sandbox.sandbox.failures.append(_failure(503, 100))
    await rig.publish(env(1))
    for _ in range(3):
        await rig.worker(delays=(0.05,)).run(until_idle=True)
        await asyncio.sleep(0.1)
    stats = await rig.bus.stats()
    assert stats.dead_lettered_by_reason == {"RetriesExhausted": 1}


async def test_permanent_failure_dead_letters_with_the_erp_text(rig: Rig) -> None:
    await rig.publish(env(1, org_number="123456789"))
    assert (await rig.worker().run(until_idle=True)).counts == {"dead:ProviderRejected": 1}
    [dead] = await rig.bus.dead_letters()
    assert dead.reason == "ProviderRejected" and "org_number" in dead.description
    assert json.loads(dead.body)["id"] == "acme-e1"


async def test_per_client_order_is_kept(rig: Rig) -> None:
    # created, then three updates of the same record: applied in order, the last name wins.
    update = {"type_": "customer.updated", "id": "acme-c1", "number": "1001"}
    events = [env(1), *(env(100 + i, name=f"v{i}", **update) for i in range(1, 4))]
    await rig.publish(*events)
    await rig.worker(concurrency=16).run(until_idle=True)
    record = rig.sandbox.sandbox.store.get("customer", "acme-c1")
    assert record is not None
    assert (record.data["name"], record.version) == ("v3", 4)


async def test_shutdown_finishes_in_flight_work_and_stops(rig: Rig) -> None:
    rig.sandbox.sandbox._latency_s = 0.3
    await rig.publish(*(env(n, "globex") for n in range(30)))
    worker = rig.worker(concurrency=4)
    task = asyncio.create_task(worker.run())
    await asyncio.sleep(0.15)
    worker.stop()
    stats = await asyncio.wait_for(task, 10)
    assert stats.processed >= 1
    assert stats.counts.get("abandoned", 0) == 0, "in-flight work finished within the grace period"
    remaining = await rig.bus.stats()
    assert remaining.locked == 0 and remaining.active == 30 - stats.counts["created"]


async def test_grace_period_over_abandons_the_rest(rig: Rig) -> None:
    rig.sandbox.sandbox._latency_s = 2.0
    await rig.publish(env(1))
    worker = rig.worker(grace_s=0.1)
    task = asyncio.create_task(worker.run())
    await asyncio.sleep(0.3)
    worker.stop()
    stats = await asyncio.wait_for(task, 10)
    assert stats.counts == {"abandoned": 1}
    assert (await rig.bus.stats()).active == 1, "the abandoned message is ready for the next worker"


async def test_lock_is_renewed_during_a_slow_push(rig: Rig) -> None:
    rig.sandbox.sandbox._latency_s = 1.2
    rig.bus.lock_duration_s = 0.5
    await rig.publish(env(1))
    stats = await rig.worker().run(until_idle=True)
    assert stats.counts == {"created": 1}
    assert (await rig.writes()) == {"customer/acme-c1": 1}


def _failure(status: int, count: int) -> Any:
    from providers.generic_rest.sandbox.app import InjectedFailure

    return InjectedFailure(status=status, remaining=count)
