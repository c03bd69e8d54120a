"""An ERP that answers a write with an id or version the sync log cannot keep (longer than its
column, or with a control character: PostgreSQL refuses NUL) gets one clear dead letter at the
first delivery, on both databases: it was a failed journal insert at every delivery (a statement-long
error each time) until MaxDeliveryCountExceeded said nothing of the cause."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from config_db import clients, sync_log
from config_db.database import make_engine
from config_db.secrets import SecretBox
from contracts import Action, Entity
from providers.base import InboundChange, WebhookRejected
from tests.integration.worker_rig import publish_one_customer
from worker.buses.local import LocalBus
from worker.db import Database
from worker.messaging.connections import ConnectionDirectory
from worker.messaging.dispatch import Dispatcher
from worker.messaging.retry import RetryPolicy
from worker.messaging.runner import Worker

KEY = "unusable-ids-key"


class HostileErp:
    """The generic REST interface, but each write answered with ``answer``."""

    def __init__(self, answer: dict[str, object]) -> None:
        self.answer, self.writes = answer, 0

    def app(self) -> web.Application:
        async def probe(_: web.Request) -> web.Response:
            return web.json_response({"subject": "hostile", "interface": "v1"})

        async def put(request: web.Request) -> web.Response:
            await request.read()
            self.writes += 1
            return web.json_response(self.answer, status=201)

        app = web.Application()
        app.router.add_get("/v1", probe)
        app.router.add_put("/v1/{entity}/{id}", put)
        return app


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _serve(erp: HostileErp) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(erp.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


@pytest.mark.parametrize(
    ("answer", "named"),
    [
        ({"external_id": "x" * 256, "version": 1}, "external id of 256 characters (at most 255)"),
        ({"external_id": "ab\x00cd", "version": 1}, "external id 'ab\\x00cd' (a control character in it)"),
    ],
    ids=["too-long", "nul"],
)
async def test_an_unusable_id_is_one_clear_dead_letter(
    db_url: str, http: aiohttp.ClientSession, answer: dict[str, object], named: str
) -> None:
    erp = HostileErp(answer)
    runner, url = await _serve(erp)
    db = Database(make_engine(db_url))
    bus = LocalBus(db, max_delivery_count=10)
    try:

        def provision(conn: object) -> None:
            clients.add_client(conn, "acme", "acme")  # type: ignore[arg-type]
            secret = SecretBox(KEY).encrypt({"token": "t"})
            stored = clients.StoredConnection("acme", "generic_rest", url, {}, secret, True)
            clients.set_connection(conn, stored)  # type: ignore[arg-type]

        await db.run(provision)
        await publish_one_customer(bus)
        policy = RetryPolicy(delays=(0.1,), inprocess_attempts=1, base_wait_s=0.01)
        worker = Worker(bus, Dispatcher(db, ConnectionDirectory(db, http, KEY), policy), concurrency=2)
        stats = await worker.run(until_idle=True)
        [letter] = await bus.dead_letters()
        log = await db.run(lambda conn: sync_log.entries(conn, message_id="e1"))
    finally:
        await bus.close()
        await db.close()
        await runner.cleanup()
    assert dict(stats.counts) == {"dead:ProviderRejected": 1}, "at the first delivery"
    assert erp.writes == 1
    assert letter.reason == "ProviderRejected"
    assert letter.description.startswith(f"the ERP answered with an unusable {named}")
    assert [e["action"] for e in reversed(log)] == ["pending", "failed"]


@pytest.mark.parametrize(
    ("external_id", "version", "event_id"),
    [("1" * 256, None, None), ("1", "v" * 65, None), ("1\n2", None, None), ("1", None, "e" * 256)],
    ids=["long-id", "long-version", "newline", "long-event-id"],
)
def test_a_webhook_naming_an_unusable_id_is_malformed(
    external_id: str, version: str | None, event_id: str | None
) -> None:
    with pytest.raises(WebhookRejected) as caught:
        InboundChange(Entity.customer, Action.updated, external_id, version, event_id=event_id)
    assert caught.value.reason == "malformed"
    assert str(caught.value).startswith("the webhook names an unusable ")
