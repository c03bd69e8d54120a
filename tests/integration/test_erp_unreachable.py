"""An ERP that cannot be reached (issue 19 #5): one that refuses connections for a while and comes
back, and a wrong base URL that never answers. The first costs nothing (retried with the policy,
each record written once, no dead letter, the worker up throughout); the two are told apart per
connection, in the overview the console shows and in `cwi status`."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from config_db import clients
from config_db.database import make_engine
from config_db.secrets import SecretBox
from providers.generic_rest.sandbox import SandboxServer
from tests.e2e.cli import SECRET_KEY, Cli
from tests.integration.worker_rig import env as envelope_of
from worker.buses.base import OutgoingMessage
from worker.buses.local import LocalBus
from worker.db import Database
from worker.messaging.connections import ConnectionDirectory
from worker.messaging.dispatch import Dispatcher
from worker.messaging.retry import RetryPolicy
from worker.messaging.runner import Worker
from worker.operators.overview import overview

pytestmark = pytest.mark.slow

TOKEN = "tok-unreachable"


def envelope(client: str, n: int) -> OutgoingMessage:
    return OutgoingMessage(json.dumps(envelope_of(n, client)).encode(), f"t-{client}-{n}", client)


def closed_port() -> int:
    """A port nothing listens on: bound, then released (connections to it are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def until(predicate: Any, task: asyncio.Task[Any], timeout_s: float = 60) -> None:
    async with asyncio.timeout(timeout_s):
        while not await predicate():
            assert not task.done(), task
            await asyncio.sleep(0.05)


async def test_an_erp_refusing_connections_costs_nothing_and_is_told_apart_from_a_wrong_url(
    sqlite_url: str, tmp_path: Path
) -> None:
    db = Database(make_engine(sqlite_url))
    bus = LocalBus(db, lock_duration_s=10, max_delivery_count=10)
    records = str(tmp_path / "erp.sqlite")  # the ERP's own records survive its restart
    first = SandboxServer(token=TOKEN, db_path=records)
    await first.__aenter__()
    port = int(first.base_url.rsplit(":", 1)[1])
    ghost_url = f"http://127.0.0.1:{closed_port()}"

    def provision(conn: Any) -> None:
        credentials = SecretBox(SECRET_KEY).encrypt({"token": TOKEN})
        for client, url in (("acme", first.base_url), ("ghost", ghost_url)):
            clients.add_client(conn, client, client)
            clients.set_connection(
                conn, clients.StoredConnection(client, "generic_rest", url, {}, credentials, True)
            )

    await db.run(provision)
    writes: list[dict[str, int]] = []
    async with aiohttp.ClientSession() as http:
        policy = RetryPolicy(delays=(0.3, 0.6, 1.0, 2.0, 3.0), inprocess_attempts=1, base_wait_s=0.01)
        worker = Worker(bus, Dispatcher(db, ConnectionDirectory(db, http, SECRET_KEY), policy), concurrency=4)
        task = asyncio.create_task(worker.run())
        try:
            await bus.publish([envelope("acme", n) for n in range(5)])

            async def first_five() -> bool:
                return len((await first.stats())["writes"]) == 5

            await until(first_five, task)
            writes.append(dict((await first.stats())["writes"]))
            await first.__aexit__(None, None, None)  # the ERP goes away: connections refused

            await bus.publish(
                [envelope("acme", n) for n in range(5, 15)] + [envelope("ghost", n) for n in range(3)]
            )

            async def states() -> dict[str, str]:
                found = await overview(db, bus, [])
                return {row["client_id"]: row["state"] for row in found["clients"]}

            async def both_failing() -> bool:
                now = await states()
                return now.get("acme") == "failing" and now.get("ghost") == "never succeeded"

            await until(both_failing, task)
            assert not task.done(), "the worker stays up while an ERP is unreachable"

            async with SandboxServer(token=TOKEN, db_path=records, port=port) as second:

                async def all_written() -> bool:
                    return len((await second.stats())["writes"]) == 10

                await until(all_written, task)
                writes.append(dict((await second.stats())["writes"]))
                assert (await states())["acme"] == "ok (failed before)"
        finally:
            worker.stop()
            await asyncio.wait_for(task, 30)
            await db.close()

    written = [key for w in writes for key in w for _ in range(w[key])]
    assert sorted(written) == sorted(f"customer/acme-c{n}" for n in range(15)), "each record written once"
    letters = await _dead_letters(sqlite_url)
    assert not [letter for letter in letters if "acme" in letter], (
        "an ERP that came back costs no dead letter"
    )

    status = await asyncio.to_thread(Cli(sqlite_url).status)
    by_client = {row["client_id"]: row for row in status["last_outcomes"]}
    assert by_client["acme"]["state"] == "ok (failed before)"
    assert by_client["ghost"]["state"] == "never succeeded"
    assert len(status["last_outcomes"]) == 2, "one line per connection, not per message"


async def _dead_letters(url: str) -> list[str]:
    db = Database(make_engine(url))
    try:
        return [letter.message_id for letter in await LocalBus(db).dead_letters()]
    finally:
        await db.close()
