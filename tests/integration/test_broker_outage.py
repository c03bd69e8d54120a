"""A Service Bus outage under a running worker (issue 19 #4): the broker stops answering (the test
peer stops listening and drops every connection, so the locks of messages in flight go), then
comes back on the same port. The worker reconnects by itself, the messages locked before the
outage are redelivered and recognised (each record written once), nothing is dead-lettered, and
the outage is told in a few lines, not one per message."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from config_db import clients
from config_db.secrets import SecretBox
from providers.generic_rest.sandbox import SandboxServer
from tests.integration.buses import LOCK_S, QUEUE, SESSION_QUEUE, azure_bus
from tests.integration.worker_rig import env as envelope_of
from tests.servicebus_peer import EntityOptions, ServiceBusPeer
from worker.buses.base import OutgoingMessage
from worker.db import Database
from worker.messaging.connections import ConnectionDirectory
from worker.messaging.dispatch import Dispatcher
from worker.messaging.retry import RetryPolicy
from worker.messaging.runner import Worker

pytestmark = pytest.mark.slow

KEY = "broker-outage-key"
TOKEN = "tok-broker-outage"
CLIENTS = ("acme", "globex", "initech")
PER_CLIENT = 30
DOWN_S = 4.0  # the 30 s behaves the same (the SDK's reconnect backoff is capped); kept short


@pytest.fixture
def private_peer() -> Iterator[ServiceBusPeer]:
    """A peer of this test's own: an outage of the shared one would disturb other tests."""
    entities = {
        QUEUE: EntityOptions(max_delivery_count=3, lock_duration_s=LOCK_S),
        SESSION_QUEUE: EntityOptions(max_delivery_count=3, lock_duration_s=LOCK_S, requires_session=True),
    }
    with ServiceBusPeer(entities) as peer:
        yield peer


def provision(sandbox_url: str) -> Any:
    def work(conn: Any) -> None:
        for client in CLIENTS:
            clients.add_client(conn, client, client)
            credentials = SecretBox(KEY).encrypt({"token": TOKEN})
            stored = clients.StoredConnection(client, "generic_rest", sandbox_url, {}, credentials, True)
            clients.set_connection(conn, stored)

    return work


@pytest.mark.parametrize("sessions", [False, True], ids=["queue", "sessions"])
async def test_the_worker_reconnects_after_a_broker_outage_and_writes_each_record_once(
    sqlite_url: str, private_peer: ServiceBusPeer, sessions: bool
) -> None:
    from config_db.database import make_engine

    entity = SESSION_QUEUE if sessions else QUEUE
    db = Database(make_engine(sqlite_url))
    bus = azure_bus(private_peer.connection_string, entity, sessions, LOCK_S, idle_probe_s=0.3)
    expected = {f"customer/{c}-c{n}": 1 for c in CLIENTS for n in range(PER_CLIENT)}
    async with SandboxServer(token=TOKEN, latency_ms=20) as sandbox, aiohttp.ClientSession() as http:
        await db.run(provision(sandbox.base_url))
        await bus.open()
        try:
            await bus.publish(
                [
                    OutgoingMessage(json.dumps(envelope_of(n, c)).encode(), f"t-{c}-{n}", c)
                    for n in range(PER_CLIENT)
                    for c in CLIENTS
                ]
            )
            policy = RetryPolicy(delays=(0.2, 0.5, 1.0), inprocess_attempts=2, base_wait_s=0.01)
            worker = Worker(
                bus,
                Dispatcher(db, ConnectionDirectory(db, http, KEY), policy),
                concurrency=8,
                shutdown_grace_s=5,
            )
            with capture_logs() as logs:
                task = asyncio.create_task(worker.run())
                async with asyncio.timeout(120):
                    while len((await sandbox.stats())["writes"]) < len(expected) // 4:
                        assert not task.done(), task
                        await asyncio.sleep(0.05)
                    dropped = await asyncio.to_thread(private_peer.go_offline)
                    outage_started = time.monotonic()
                    await asyncio.sleep(DOWN_S)
                    assert not task.done(), "the worker stays up through the outage"
                    await asyncio.to_thread(private_peer.come_back)
                    while private_peer.active_count(entity) > 0 or worker.stats.processed == 0:
                        assert not task.done(), task
                        await asyncio.sleep(0.1)
                    recovered_after = time.monotonic() - outage_started
                worker.stop()
                stats = await asyncio.wait_for(task, 30)
            writes = (await sandbox.stats())["writes"]
        finally:
            await bus.close()
            await db.close()
    assert dropped >= 1, "the worker was connected when the broker went away"
    assert writes == expected, "each record written once: the redeliveries were recognised"
    assert private_peer.dead_letter_count(entity) == 0, "an outage is not the messages' fault"
    assert not any(key.startswith("dead") for key in stats.counts), stats.counts
    assert recovered_after < DOWN_S + 60
    # Told when it starts and when it ends, not per receiver, attempt or message.
    events = [str(e.get("event")) for e in logs if e.get("log_level") != "debug"]
    assert events.count("service bus unreachable; reconnecting") == 1, events
    assert events.count("service bus back") == 1, events
    assert not [e for e in logs if e.get("log_level") == "error"], [
        e for e in logs if e.get("log_level") == "error"
    ]
