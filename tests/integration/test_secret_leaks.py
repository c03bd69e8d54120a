"""No secret in clear anywhere: an ERP that quotes our credentials in its errors, then every log
line, every stored text and every operator view is searched for each secret value."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from config_db import clients, sync_log
from config_db.database import make_engine
from config_db.secrets import SecretBox
from providers import secrets as provider_secrets
from tests.integration.worker_rig import publish_one_customer
from worker.buses.local import LocalBus
from worker.db import Database
from worker.logging import configure
from worker.messaging.connections import ConnectionDirectory
from worker.messaging.dispatch import Dispatcher
from worker.messaging.retry import RetryPolicy
from worker.messaging.runner import Worker
from worker.operators.dlq import DeadLetterOperations
from worker.operators.letters import Selection

KEY = "leak-test-key"
TOKEN = "tok-very-secret-4711"
RUNTIME = "session-token-learned-at-run-time-0815"


def tattletale() -> web.Application:
    """An ERP whose error texts quote the request's Authorization header (and a runtime token)."""

    async def refuse(request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        body = {
            "error": f"refused: Authorization: {auth}; your session {RUNTIME} is invalid",
            "rule": "schema",
        }
        return web.json_response(body, status=422)

    async def ping(request: web.Request) -> web.Response:
        return web.json_response({"subject": "cwi", "interface": "v1"})

    app = web.Application()
    app.router.add_get("/v1/_ping", ping)
    app.router.add_route("*", "/v1/{entity}/{cw_id}", refuse)
    return app


@pytest.fixture
async def erp() -> AsyncIterator[str]:
    runner = web.AppRunner(tattletale())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def test_credentials_an_erp_quotes_are_masked_in_logs_stored_texts_and_operator_views(
    db_url: str, erp: str
) -> None:
    out = io.StringIO()
    configure(fmt="json", level="DEBUG", stream=out)
    provider_secrets.learned(RUNTIME)  # as a provider does when it obtains a session token
    db = Database(make_engine(db_url))
    bus = LocalBus(db)
    try:

        def provision(conn: Any) -> None:
            clients.add_client(conn, "acme", "acme")
            credentials = SecretBox(KEY).encrypt({"token": TOKEN})
            clients.set_connection(
                conn, clients.StoredConnection("acme", "generic_rest", erp, {}, credentials, True)
            )

        await db.run(provision)
        await publish_one_customer(bus)
        async with aiohttp.ClientSession() as http:
            policy = RetryPolicy(delays=(), inprocess_attempts=1)
            worker = Worker(bus, Dispatcher(db, ConnectionDirectory(db, http, KEY), policy), concurrency=2)
            stats = await worker.run(until_idle=True)
        assert stats.counts == {"dead:ProviderRejected": 1}

        ops = DeadLetterOperations(db, bus, operator="alice")
        [letter] = await ops.select(Selection())
        views = [
            letter.dead.description,
            json.dumps(await ops.show(letter.id), default=str),
            json.dumps(await ops.preview([letter]), default=str),
            json.dumps(await db.run(lambda c: sync_log.entries(c, limit=1000)), default=str),
        ]
        stored = await db.run(
            lambda c: [
                str(v)
                for table in ("sync_log", "bus_messages", "inbox", "record_links")
                for row in c.exec_driver_sql(f"SELECT * FROM {table}")
                for v in row
            ]
        )
        everything = "\n".join([out.getvalue(), *views, *stored])
        assert "refused: Authorization: Bearer ***" in letter.dead.description, "the ERP's text, masked"
        for secret in (TOKEN, RUNTIME):
            assert secret not in everything, f"{secret!r} appears in clear"
        lines = [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]
        [dead] = [line for line in lines if line["event"] == "dead-lettered"]
        assert (dead["message_id"], dead["client_id"], dead["provider"]) == ("e1", "acme", "generic_rest")
        assert [line["event"] for line in lines if line["event"].startswith("worker ")] == [
            "worker started",
            "worker stopped",
        ]
    finally:
        configure()
        await db.close()
