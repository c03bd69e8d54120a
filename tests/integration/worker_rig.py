"""The worker in-process on a real bus, against the real sandbox ERP: the rig the worker suites share.

``rig`` is parametrised over every bus: the local bus (SQLite and PostgreSQL), Azure Service Bus
through the real SDK on the AMQP test peer (a queue, and a session queue), and the connected
namespace when there is one (tests/integration/buses.py). The configuration database is the local
bus's own database, or SQLite beside Service Bus.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from config_db import clients
from config_db.database import make_engine
from config_db.secrets import SecretBox
from providers.generic_rest.sandbox import SandboxServer
from tests.databases import empty_postgres, sqlite_copy
from tests.integration.buses import (
    LOCK_S,
    MAX_DELIVERIES,
    QUEUE,
    SESSION_QUEUE,
    Namespace,
    OffsetClock,
    azure_bus,
    drain,
)
from tests.servicebus_peer import ServiceBusPeer
from worker.buses.azure import AzureBus
from worker.buses.base import BusStatsUnavailable, DeadLetter, Delivery, OutgoingMessage
from worker.buses.local import LocalBus
from worker.db import Database
from worker.messaging.connections import ConnectionDirectory
from worker.messaging.dispatch import Dispatcher
from worker.messaging.retry import RetryPolicy
from worker.messaging.runner import Worker

KEY = "worker-test-key"
TOKEN = "tok-worker-test"
CLIENTS = ("acme", "globex", "initech")
# Short, so that stopping a worker is quick: the tests run workers until an outcome, not until idle.
PEER_IDLE_PROBE_S = 0.3


@dataclass
class Rig:
    name: str
    db: Database
    bus: LocalBus | AzureBus
    sandbox: SandboxServer
    http: aiohttp.ClientSession
    peer: ServiceBusPeer | None = None
    entity: str = QUEUE
    clock: OffsetClock | None = None
    lock_s: float = LOCK_S

    @property
    def orders_by_client(self) -> bool:
        """One message per client in flight, in order: the local bus, and Service Bus with sessions."""
        return isinstance(self.bus, LocalBus) or self.bus.sessions

    def pipeline(
        self, delays: tuple[float, ...] = (0.2, 0.2), http: aiohttp.ClientSession | None = None
    ) -> Dispatcher:
        policy = RetryPolicy(delays=delays, inprocess_attempts=2, base_wait_s=0.01)
        return Dispatcher(self.db, ConnectionDirectory(self.db, http or self.http, KEY), policy)

    def worker(
        self, *, concurrency: int = 8, grace_s: float = 5.0, delays: tuple[float, ...] = (0.2, 0.2)
    ) -> Worker:
        return Worker(self.bus, self.pipeline(delays), concurrency=concurrency, shutdown_grace_s=grace_s)

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

    async def dead_letters(self) -> list[DeadLetter]:
        return await self.bus.dead_letters()

    async def receive_one(self, timeout_s: float = 15.0) -> Delivery:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while asyncio.get_running_loop().time() < deadline:
            if got := await self.bus.receive(1, 0.5):
                return got[0]
        raise AssertionError(f"nothing received within {timeout_s} s")

    async def lose_lock(self, delivery: Delivery) -> None:
        """As if the process holding ``delivery`` died: its lock lapses, nothing is settled."""
        if self.clock is not None:
            self.clock.offset += self.lock_s + 1
        elif self.peer is not None:
            # A dead process's connection goes, and its message and session locks with it.
            self.peer.drop_connections()
        elif self.lock_s <= 10:
            await asyncio.sleep(self.lock_s + 1)
        else:
            pytest.skip("the namespace's lock duration is too long to wait out here")

    async def scheduled(self) -> int | None:
        """Scheduled messages; None where the namespace will not say (no Manage rights, the emulator)."""
        if self.peer is not None:
            return self.peer.scheduled_count(self.entity)
        try:
            return (await self.bus.stats()).scheduled
        except BusStatsUnavailable:
            return None

    async def waiting(self) -> int:
        """Messages not yet settled: active, locked included (as Service Bus counts them)."""
        if self.peer is not None:
            return self.peer.active_count(self.entity)
        try:
            stats = await self.bus.stats()
        except BusStatsUnavailable:
            return len(await self.bus.receive(100, 3.0))  # locks them: only at the end of a test
        return stats.active + stats.locked


def _provision(sandbox_url: str) -> Any:
    def provision(conn: Any) -> None:
        credentials = SecretBox(KEY).encrypt({"token": TOKEN})
        for client in CLIENTS:
            clients.add_client(conn, client, client)
            stored = clients.StoredConnection(client, "generic_rest", sandbox_url, {}, credentials, True)
            clients.set_connection(conn, stored)

    return provision


RIG_BUSES = [
    "local-sqlite",
    pytest.param("local-postgres", marks=pytest.mark.postgres),
    "azure",
    "azure-sessions",
    pytest.param("azure-connected", marks=pytest.mark.connected),
    pytest.param("azure-sessions-connected", marks=pytest.mark.connected),
]


async def _bus_for(
    kind: str, request: pytest.FixtureRequest, db: Database
) -> tuple[LocalBus | AzureBus, dict[str, Any]]:
    """The bus for ``kind`` and the Rig fields that go with it."""
    if kind.startswith("local"):
        clock = OffsetClock()
        local = LocalBus(db, lock_duration_s=LOCK_S, max_delivery_count=MAX_DELIVERIES, clock=clock)
        return local, {"clock": clock}
    sessions = kind.startswith("azure-sessions")
    if kind.endswith("-connected"):
        ns: Namespace = request.getfixturevalue("servicebus_namespace")
        await drain(ns, sessions)
        bus = azure_bus(ns.connection_string, ns.entity(sessions), sessions, ns.lock_s)
        return bus, {"entity": ns.entity(sessions), "lock_s": ns.lock_s}
    peer: ServiceBusPeer = request.getfixturevalue("peer")
    entity = SESSION_QUEUE if sessions else QUEUE
    bus = azure_bus(peer.connection_string, entity, sessions, LOCK_S, idle_probe_s=PEER_IDLE_PROBE_S)
    return bus, {"peer": peer, "entity": entity}


@pytest.fixture(params=RIG_BUSES)
async def rig(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Rig]:
    kind: str = request.param
    if kind == "local-postgres":
        url = empty_postgres(request.getfixturevalue("postgres_server"))
    else:
        url = sqlite_copy(request.getfixturevalue("sqlite_templates")["schema"], tmp_path)
    db = Database(make_engine(url))
    bus, extra = await _bus_for(kind, request, db)
    try:
        if isinstance(bus, AzureBus):
            await bus.open()
        async with SandboxServer(token=TOKEN) as sandbox, aiohttp.ClientSession() as http:
            await db.run(_provision(sandbox.base_url))
            yield Rig(kind, db, bus, sandbox, http, **extra)
    finally:
        await bus.close()
        await db.close()
    if kind.endswith("-connected"):
        await drain(request.getfixturevalue("servicebus_namespace"), kind.startswith("azure-sessions"))


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


async def publish_one_customer(bus: LocalBus | AzureBus) -> None:
    """One customer.created of acme's, envelope ``e1``, as the frontend sends it."""
    envelope = {
        "id": "e1",
        "client_id": "acme",
        "type": "customer.created",
        "source": "frontend",
        "occurred_at": "2026-12-03T10:00:00Z",
        "data": {"id": "c1", "number": "1", "name": "Acme"},
    }
    await bus.publish([OutgoingMessage(json.dumps(envelope).encode(), "t-e1", "acme")])


def failure(status: int, count: int, retry_after: float | None = None) -> Any:
    from providers.generic_rest.sandbox.app import InjectedFailure

    return InjectedFailure(status=status, remaining=count, retry_after=retry_after)
