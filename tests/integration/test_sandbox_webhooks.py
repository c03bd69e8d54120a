"""The sandbox ERP's webhooks: every change, ours and a user's, signed per Standard Webhooks, in order."""

from __future__ import annotations

import asyncio
import base64
import random
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from standardwebhooks import Webhook

from providers.generic_rest.sandbox import SandboxServer
from providers.generic_rest.sandbox.firing import Disorder
from providers.generic_rest.webhooks import parse_webhook

SECRET = "whsec_" + base64.b64encode(b"sandbox-webhook-test-key-32bytes").decode()
TOKEN = "tok-hooks"


class Receiver:
    """A real HTTP endpoint that records each call; the first ``fail_first`` calls answer 503."""

    def __init__(self, fail_first: int = 0) -> None:
        self.calls: list[tuple[dict[str, str], bytes]] = []
        self.fail_first = fail_first
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.calls.append((dict(request.headers), await request.read()))
        if len(self.calls) <= self.fail_first:
            return web.Response(status=503)
        return web.Response(status=202)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    recv = Receiver()
    app = web.Application()
    app.router.add_post("/hook", recv.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    recv.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    yield recv
    await runner.cleanup()


async def _put(http: aiohttp.ClientSession, sb: SandboxServer, cw_id: str, name: str, key: str) -> None:
    body = {"id": cw_id, "number": "10001", "name": name}
    headers = {"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": key}
    async with http.put(f"{sb.base_url}/v1/customer/{cw_id}", json=body, headers=headers) as resp:
        assert resp.status in (200, 201), await resp.text()


async def test_every_change_fires_a_signed_webhook_in_order(receiver: Receiver) -> None:
    async with (
        SandboxServer(token=TOKEN, api_user="cwi-api") as sb,
        aiohttp.ClientSession() as http,
    ):
        async with http.post(
            f"{sb.base_url}/_sandbox/webhook", json={"url": receiver.url, "secret": SECRET}
        ) as r:
            assert r.status == 200
        await _put(http, sb, "c1", "Acme AS", "k1")
        await _put(http, sb, "c1", "Acme AS", "k1")  # a replay: no change, no webhook
        async with http.post(
            f"{sb.base_url}/_sandbox/user-change",
            json={"entity": "customer", "cw_id": "c1", "data": {"number": "10001", "name": "Kari's name"}},
        ) as r:
            assert (r.status, await r.json()) == (200, {"external_id": "GR-customer-1", "version": 2})
        async with http.post(
            f"{sb.base_url}/_sandbox/user-change", json={"entity": "customer", "cw_id": "c1", "delete": True}
        ) as r:
            assert r.status == 200
        await sb.drain_webhooks()
        async with http.get(f"{sb.base_url}/_sandbox/webhook") as r:
            summary = await r.json()

    assert summary == {"url": receiver.url, "sent": 3, "failed": 0, "pending": 0, "user_changes": 2}
    events: list[Any] = [Webhook(SECRET).verify(body, headers) for headers, body in receiver.calls]
    assert [e["type"] for e in events] == ["customer.created", "customer.updated", "customer.deleted"]
    assert [(e["data"]["version"], e["data"]["author"]) for e in events] == [
        (1, "cwi-api"),
        (2, "erp-user"),
        (3, "erp-user"),
    ]
    assert events[1]["data"]["record"]["name"] == "Kari's name" and "record" not in events[2]["data"]
    (change,) = parse_webhook(*receiver.calls[1], secret=SECRET)
    assert (change.cw_id, change.external_id, change.version) == ("c1", "GR-customer-1", "2")


async def test_a_failed_call_is_retried_with_the_same_webhook_id(receiver: Receiver) -> None:
    receiver.fail_first = 2
    async with SandboxServer(token=TOKEN, webhook_url=receiver.url, webhook_secret=SECRET) as sb:
        async with aiohttp.ClientSession() as http:
            await _put(http, sb, "c1", "Acme AS", "k1")
        await asyncio.wait_for(sb.drain_webhooks(), 5)
    assert len(receiver.calls) == 3
    assert len({headers["webhook-id"] for headers, _ in receiver.calls}) == 1


async def test_a_record_created_by_a_user_in_the_erp_names_no_cw_id(receiver: Receiver) -> None:
    async with SandboxServer(token=TOKEN, webhook_url=receiver.url, webhook_secret=SECRET) as sb:
        status, body = sb.sandbox.user_change(
            {"entity": "customer", "data": {"number": "7", "name": "New AS"}}
        )
        assert status == 200
        await sb.drain_webhooks()
    (change,) = parse_webhook(*receiver.calls[0], secret=SECRET)
    assert change.cw_id is None and change.external_id == body["external_id"]
    assert change.value == {"number": "7", "name": "New AS"}


@pytest.mark.parametrize(
    ("spec", "status", "says"),
    [
        ({"entity": "order", "data": {}}, 400, "entity must be one of"),
        ({"entity": "customer"}, 400, "data"),
        ({"entity": "customer", "delete": True}, 400, "cw_id"),
        (
            {"entity": "customer", "cw_id": "nope", "data": {"number": "1", "name": "x"}},
            404,
            "does not exist",
        ),
    ],
)
async def test_bad_user_changes_are_refused_naming_the_problem(
    spec: dict[str, Any], status: int, says: str
) -> None:
    async with SandboxServer(token=TOKEN) as sb:
        got, body = sb.sandbox.user_change(spec)
    assert got == status and says in body["error"]


async def test_a_subscription_needs_a_standard_webhooks_secret() -> None:
    async with (
        SandboxServer(token=TOKEN) as sb,
        aiohttp.ClientSession() as http,
        http.post(f"{sb.base_url}/_sandbox/webhook", json={"url": "http://x", "secret": "plain"}) as r,
    ):
        assert r.status == 400
        assert "whsec_" in (await r.json())["error"]


async def test_with_disorder_calls_come_late_out_of_order_and_some_twice(receiver: Receiver) -> None:
    async with SandboxServer(token=TOKEN, api_user="cwi-api") as sb, aiohttp.ClientSession() as http:
        sb.sandbox.webhooks.history = []
        sb.sandbox.webhooks.disorder = Disorder(max_delay_s=0.2, duplicate_rate=0.5, rng=random.Random(3))
        sb.sandbox.webhooks.subscribe(receiver.url, SECRET)
        for n in range(20):
            await _put(http, sb, "c1", f"Acme {n}", f"k{n}")
        await asyncio.wait_for(sb.drain_webhooks(), 5)
        history = sb.sandbox.webhooks.history

    versions = [Webhook(SECRET).verify(body, headers)["data"]["version"] for headers, body in receiver.calls]
    assert sorted(set(versions)) == list(range(1, 21)), "every change was delivered"
    assert versions != sorted(versions), "later changes overtook earlier ones"
    assert len(versions) > 20, "some calls came twice"
    ids = [headers["webhook-id"] for headers, _ in receiver.calls]
    assert len(set(ids)) == 20, "a repeated call keeps its webhook-id"
    assert [e["data"]["version"] for e in history] == list(range(1, 21)), "history keeps the changes in order"
