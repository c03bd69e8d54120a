"""Infrastructure faults under a running worker: its database restarted (fast, immediately, down
for a few seconds), the listener during the outage. A private PostgreSQL cluster made by the tests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from config_db import clients
from config_db.database import make_engine
from config_db.migrate import upgrade
from config_db.secrets import SecretBox
from providers.generic_rest.sandbox import SandboxServer
from tests import pgcluster
from tests.conftest import require_service
from tests.integration.buses import LOCK_S, QUEUE, SESSION_QUEUE, azure_bus
from tests.integration.worker_rig import env as envelope_of
from tests.servicebus_peer import ServiceBusPeer
from worker.bootstrap import App, open_app
from worker.buses.base import OutgoingMessage
from worker.messaging.runner import RunStats
from worker.settings import Settings

pytestmark = pytest.mark.slow

KEY = "outage-test-key"
TOKEN = "tok-outage"
CLIENTS = ("acme", "globex", "initech")
PER_CLIENT = 40


@pytest.fixture(scope="module")
def cluster() -> Iterator[pgcluster.PrivateCluster]:
    require_service(pgcluster.available(), "PostgreSQL's initdb (a private cluster)")
    private = pgcluster.PrivateCluster().init()
    private.start()
    yield private
    private.destroy()


@asynccontextmanager
async def rig(
    cluster: pgcluster.PrivateCluster, latency_ms: int = 20, *, publish: bool = True
) -> AsyncIterator[tuple[App, SandboxServer]]:
    engine = make_engine(cluster.url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    upgrade(engine)
    engine.dispose()
    settings = Settings(database_url=cluster.url, secret_key=KEY, concurrency=8, lock_duration_s=5)
    async with (
        SandboxServer(token=TOKEN, latency_ms=latency_ms) as sandbox,
        open_app(settings, http=True) as app,
    ):

        def provision(conn: Any) -> None:
            for client in CLIENTS:
                clients.add_client(conn, client, client)
                credentials = SecretBox(KEY).encrypt({"token": TOKEN})
                clients.set_connection(
                    conn,
                    clients.StoredConnection(client, "generic_rest", sandbox.base_url, {}, credentials, True),
                )

        await app.db.run(provision)
        if publish:
            await app.bus.publish(workload())
        yield app, sandbox


def workload() -> list[OutgoingMessage]:
    return [
        OutgoingMessage(json.dumps(envelope_of(n, c)).encode(), f"t-{c}-{n}", c)
        for n in range(PER_CLIENT)
        for c in CLIENTS
    ]


async def writes(sandbox: SandboxServer) -> dict[str, int]:
    found: dict[str, int] = (await sandbox.stats())["writes"]
    return found


async def run_through(
    app: App, sandbox: SandboxServer, fault: Any, settled: Any = lambda: True
) -> tuple[RunStats, list[MutableMapping[str, Any]]]:
    """Run the worker; once it has made some progress, ``fault()`` (in a thread); then until done
    (every record written, and ``settled()``: the bus holds nothing more)."""
    worker = app.worker()
    expected = len(CLIENTS) * PER_CLIENT
    with capture_logs() as logs:
        task = asyncio.create_task(worker.run())
        async with asyncio.timeout(120):
            while len(await writes(sandbox)) < expected // 4:
                assert not task.done(), task
                await asyncio.sleep(0.05)
            await asyncio.to_thread(fault)
            assert not task.done(), "the worker stays up through the outage"
            while len(await writes(sandbox)) < expected or worker.stats.processed < expected or not settled():
                assert not task.done(), task
                await asyncio.sleep(0.1)
        worker.stop()
        stats = await asyncio.wait_for(task, 30)
    return stats, logs


@pytest.mark.parametrize(
    ("mode", "down_s"),
    [("fast", 0.0), ("immediate", 0.0), ("fast", 3.0)],
    ids=["fast", "immediate", "down-3s"],
)
async def test_the_worker_rides_out_a_database_restart(
    cluster: pgcluster.PrivateCluster, mode: str, down_s: float
) -> None:
    async with rig(cluster) as (app, sandbox):
        stats, logs = await run_through(app, sandbox, lambda: cluster.restart(mode, down_s))
        expected = {f"customer/{c}-c{n}": 1 for c in CLIENTS for n in range(PER_CLIENT)}
        assert await writes(sandbox) == expected, "0 lost, 0 written twice"
        bus = await app.bus.stats()
        assert (bus.active, bus.scheduled, bus.dead_lettered) == (0, 0, 0), "nothing waits, nothing dead"
        failed = [e.get("error") for e in logs if e.get("outcome") == "settle_failed"]
        assert set(stats.counts) <= {"created", "updated", "duplicate", "lock_lost"}, (stats.counts, failed)
    events = [e["event"] for e in logs]
    assert events.count("database unreachable; waiting for it") == 1, "one line when it goes away"
    assert events.count("database back") == 1, "one line when it is back"
    assert "handler failed" not in events, "no traceback per message"


async def test_the_listener_answers_503_with_retry_after_while_the_database_is_down(
    cluster: pgcluster.PrivateCluster,
) -> None:
    from worker.dev.listening import listening  # the real listener, as `cwi serve` runs it

    async with rig(cluster) as (app, _sandbox), listening(app) as listener:
        endpoint = await listener.endpoint("acme")
        cluster.stop("fast")
        try:
            async with aiohttp.ClientSession() as http:
                async with http.post(endpoint.url, data=b"{}") as resp:
                    assert resp.status == 503 and resp.headers["Retry-After"]
                async with http.get(f"{listener.base_url}/readyz") as resp:
                    assert resp.status == 503 and "database" in (await resp.json())["down"]
                async with http.get(f"{listener.base_url}/admin/dlq") as resp:
                    assert resp.status in (401, 503)
        finally:
            cluster.start()
        async with aiohttp.ClientSession() as http:
            for _ in range(50):
                async with http.get(f"{listener.base_url}/readyz") as resp:
                    if resp.status == 200:
                        break
                await asyncio.sleep(0.1)
            assert resp.status == 200, "ready again once the database answers"


async def test_at_start_the_worker_waits_for_the_database_then_gives_up_in_one_line(
    cluster: pgcluster.PrivateCluster,
) -> None:
    from worker.outage import DatabaseUnavailable

    cluster.stop("fast")
    try:
        settings = Settings(database_url=cluster.url, startup_wait_s=1.5)
        with capture_logs() as logs, pytest.raises(DatabaseUnavailable) as failed:
            async with open_app(settings, wait=True):
                pass
        assert "CWI_STARTUP_WAIT_S" in str(failed.value) and "CWI_DATABASE_URL" in str(failed.value)
        assert [e["event"] for e in logs] == ["database not reachable yet; waiting"]

        async def start_soon() -> None:
            await asyncio.sleep(1.0)
            await asyncio.to_thread(cluster.start)

        starting = asyncio.create_task(start_soon())
        async with open_app(Settings(database_url=cluster.url, startup_wait_s=30), wait=True) as app:
            await app.db.run(lambda c: c.exec_driver_sql("SELECT 1"))
        await starting
    finally:
        if not _running(cluster):
            cluster.start()


async def test_an_outage_longer_than_the_setting_stops_the_worker_with_a_clear_error(
    cluster: pgcluster.PrivateCluster,
) -> None:
    from worker.outage import DatabaseUnavailable

    async with rig(cluster) as (app, _sandbox):
        app.db.outage.exit_after_s = 1.0
        worker = app.worker()
        task = asyncio.create_task(worker.run())
        await asyncio.sleep(0.3)
        cluster.stop("immediate")
        try:
            with pytest.raises(DatabaseUnavailable, match="CWI_OUTAGE_EXIT_S"):
                await asyncio.wait_for(task, 30)
        finally:
            cluster.start()


def _running(cluster: pgcluster.PrivateCluster) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", cluster.port)) == 0


@pytest.mark.parametrize("sessions", [False, True], ids=["queue", "sessions"])
async def test_on_service_bus_received_messages_wait_out_the_outage_without_a_dead_letter(
    cluster: pgcluster.PrivateCluster, peer: ServiceBusPeer, sessions: bool
) -> None:
    """Held (their locks renewed) while the database is down, none taken meanwhile, none abandoned
    into MaxDeliveryCount (the peer's is 3); then each written once."""
    entity = SESSION_QUEUE if sessions else QUEUE
    async with rig(cluster, publish=False) as (app, sandbox):
        bus = azure_bus(peer.connection_string, entity, sessions, LOCK_S)
        await bus.open()
        azure_app = App(app.settings, app.db, bus, app.http)
        try:
            await bus.publish(workload())
            # A message whose lock lapsed meanwhile comes back (and is recognised) after the writes.
            stats, logs = await run_through(
                azure_app,
                sandbox,
                lambda: cluster.restart("fast", 3.0),
                settled=lambda: peer.active_count(entity) == 0,
            )
        finally:
            await bus.close()
        assert await writes(sandbox) == {f"customer/{c}-c{n}": 1 for c in CLIENTS for n in range(PER_CLIENT)}
        assert peer.dead_letter_count(entity) == 0 and peer.active_count(entity) == 0
        assert "dead" not in " ".join(stats.counts), stats.counts
    events = [e["event"] for e in logs]
    assert events.count("database unreachable; waiting for it") == 1
    assert events.count("database back") == 1
