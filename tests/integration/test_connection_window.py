"""Issue 10, failure 5: after a 429 the next message of the same connection waits for the window,
whichever direction it goes: one provider instance per connection (the connection directory),
its throttle shared by pushes and reads. The real composition (Dispatcher, ConnectionDirectory,
generic REST provider) against the sandbox ERP, which records when each request arrived."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from config_db import clients
from config_db.database import make_engine
from config_db.models import metadata
from config_db.secrets import SecretBox
from providers.generic_rest.sandbox import SandboxServer
from providers.generic_rest.sandbox.app import InjectedFailure
from worker.buses.base import Delivery
from worker.db import Database
from worker.messaging.connections import ConnectionDirectory
from worker.messaging.dispatch import Dispatcher
from worker.messaging.outcomes import Complete, Retry
from worker.messaging.retry import RetryPolicy

KEY, TOKEN = "window-test-key", "window-token"
WINDOW_S = 1.0


class Rig:
    def __init__(self, db: Database, sandbox: SandboxServer, http: aiohttp.ClientSession) -> None:
        self.sandbox = sandbox
        self.arrivals: list[tuple[float, str]] = []
        admit = sandbox.sandbox._admit

        async def recorded(request: web.Request, entity: str | None = None) -> web.Response | None:
            self.arrivals.append((time.monotonic(), f"{request.method} {request.path}"))
            return await admit(request, entity)

        sandbox.sandbox._admit = recorded  # type: ignore[method-assign]
        self.directory = ConnectionDirectory(db, http, KEY)
        policy = RetryPolicy(delays=(30.0,), inprocess_attempts=1, base_wait_s=0.0)
        self.core = Dispatcher(db, self.directory, policy)


@pytest.fixture
async def rig(tmp_path: Any) -> AsyncIterator[Rig]:
    db = Database(make_engine(f"sqlite:///{tmp_path / 'cwi.db'}"))
    metadata.create_all(db.engine)
    async with SandboxServer(token=TOKEN) as sandbox, aiohttp.ClientSession() as http:
        credentials = SecretBox(KEY).encrypt({"token": TOKEN})

        def provision(conn: Any) -> None:
            clients.add_client(conn, "acme", "Acme")
            stored = clients.StoredConnection("acme", "generic_rest", sandbox.base_url, {}, credentials, True)
            clients.set_connection(conn, stored)

        await db.run(provision)
        yield Rig(db, sandbox, http)
    await db.close()


def delivery(n: int) -> Delivery:
    env = {
        "id": f"e{n}",
        "client_id": "acme",
        "type": "customer.created",
        "source": "frontend",
        "occurred_at": "2026-11-23T10:00:00Z",
        "data": {"id": f"c{n}", "number": str(1000 + n), "name": f"Customer {n}"},
    }
    return Delivery(json.dumps(env).encode(), f"t{n}", 1, None, "acme", {}, None)  # type: ignore[arg-type]


async def test_one_provider_serves_both_directions_of_a_connection(rig: Rig) -> None:
    first = await rig.directory.connection_for("acme")
    again = await rig.directory.connection_for("acme")
    inbound: object = first.inbound()  # one object behind both protocols
    assert again is first and inbound is first.provider


async def test_after_a_429_the_next_message_and_a_read_wait_for_the_window(rig: Rig) -> None:
    rig.sandbox.sandbox.failures.append(InjectedFailure(status=429, remaining=1, retry_after=WINDOW_S))
    outcome = await rig.core.handle(delivery(1))
    assert isinstance(outcome, Retry) and outcome.delay_s >= WINDOW_S
    refused_at = rig.arrivals[-1][0]

    # Another message's push, and a read of the same connection (the identity probe), both wait.
    connection = await rig.directory.connection_for("acme")
    pushed, probed = await asyncio.gather(rig.core.handle(delivery(2)), connection.identity())
    assert pushed == Complete("created") and probed == "cwi"
    later = [(at, what) for at, what in rig.arrivals if at > refused_at]
    assert {what for _, what in later} == {"PUT /v1/customer/c2", "GET /v1/_ping"}
    assert min(at for at, _ in later) >= refused_at + WINDOW_S * 0.95, later
