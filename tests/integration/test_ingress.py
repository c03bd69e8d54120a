"""The webhook listener over real HTTP: each provider's signed call published, every bad input refused."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import aiohttp
import pytest
from sqlalchemy import update

from config_db import clients, webhooks
from config_db.models import metadata
from providers.tripletex.webhooks import signed_headers
from tests.integration._ingress import CLIENTS, SECRET_KEY, Call, Listener, listener
from worker.bootstrap import App, open_app
from worker.buses.base import OutgoingMessage
from worker.health_port import serving_health
from worker.ingress.admin_routes import MAX_REQUEST_BYTES
from worker.ingress.app import MAX_BODY, create_app
from worker.ingress.server import serving
from worker.metrics import MeteredPipeline, Metrics
from worker.settings import load_settings
from worker.sockets import listen


@pytest.fixture
async def ingress(sqlite_url: str) -> AsyncIterator[Listener]:
    async with listener(sqlite_url) as lst:
        yield lst


@pytest.fixture
async def ingress_any_db(db_url: str) -> AsyncIterator[Listener]:
    """The listener on SQLite and on PostgreSQL, for what the database decides."""
    async with listener(db_url) as lst:
        yield lst


def counted(lst: Listener, name: str, **labels: str) -> float:
    """The sum of the samples ``name`` whose labels include ``labels``."""
    return sum(
        sample.value
        for family in lst.metrics.registry.collect()
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def rejected(lst: Listener, reason: str) -> float:
    return counted(lst, "cwi_webhooks_rejected_total", reason=reason)


# ── accepted ────────────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("client", ["acme", "globex", "initech", "umbrella"], ids=lambda c: CLIENTS[c])
async def test_a_signed_call_of_each_provider_is_published_as_webhook_envelopes(
    ingress: Listener, client: str
) -> None:
    answer = await ingress.deliver(client, ingress.call(client))
    assert answer.status == 202, answer.body
    [envelope] = await ingress.published()
    assert answer.body == {"published": [envelope["id"]], "duplicates": []}
    assert envelope["client_id"] == client
    assert envelope["source"] == "webhook"
    assert envelope["type"] == "customer.updated"
    assert envelope["external"]["provider"] == CLIENTS[client]
    labels = {"provider": CLIENTS[client], "client": client}
    assert counted(ingress, "cwi_webhooks_accepted_total", **labels) == 1


async def test_the_same_delivery_twice_is_acknowledged_twice_but_published_once(
    ingress_any_db: Listener,
) -> None:
    call = ingress_any_db.call("globex", key="delivery-1")
    first = await ingress_any_db.deliver("globex", call)
    again = await ingress_any_db.deliver("globex", call)
    assert (first.status, again.status) == (202, 202)
    assert again.body == {"published": [], "duplicates": first.body["published"]}
    assert len(await ingress_any_db.published()) == 1
    labels = {"provider": "tripletex", "client": "globex"}
    assert counted(ingress_any_db, "cwi_webhooks_duplicates_total", **labels) == 1


async def test_a_retried_delivery_lost_before_its_receipt_is_published_again_with_the_same_id(
    ingress_any_db: Listener,
) -> None:
    # A crash between publish and receipt: the vendor retries, we publish again, the id is stable.
    lst = ingress_any_db
    call = lst.call("initech", event_id="evt-7")
    first = await lst.deliver("initech", call)
    with lst.app.db.engine.begin() as db:
        db.execute(webhooks.receipts.delete())
    second = await lst.deliver("initech", call)
    assert first.body["published"] == second.body["published"]
    ids = {env["id"] for env in await lst.published()}
    assert ids == set(first.body["published"])


async def test_a_token_publishes_only_for_its_own_client(ingress_any_db: Listener) -> None:
    lst = ingress_any_db
    # globex's URL, globex's signature, a body naming what hooli (also on tripletex) owns
    answer = await lst.deliver("globex", lst.call("globex", obj_id=9999, key="hooli-event"))
    assert answer.status == 202
    [envelope] = await lst.published()
    assert envelope["client_id"] == "globex"
    # hooli's signature on globex's URL is not globex's: refused
    forged = lst.call("hooli")
    answer = await lst.post(f"/webhooks/tripletex/{lst.tokens['globex']}", forged)
    assert answer.status == 401
    assert await lst.published() == []


async def test_a_token_on_another_providers_path_is_unknown(ingress_any_db: Listener) -> None:
    lst = ingress_any_db
    answer = await lst.post(f"/webhooks/visma_net/{lst.tokens['globex']}", lst.call("globex"))
    assert answer.status == 404
    assert answer.body["error"] == "unknown_token"
    assert await lst.published() == []


# ── refused ─────────────────────────────────────────────────────────────────────────────────


async def test_unknown_token_is_404(ingress: Listener) -> None:
    answer = await ingress.post("/webhooks/tripletex/not-a-token", ingress.call("globex"))
    assert answer.status == 404
    assert answer.body["error"] == "unknown_token"
    assert await ingress.published() == []
    assert rejected(ingress, "unknown_token") == 1


async def test_a_disabled_connection_is_404(ingress: Listener) -> None:
    with ingress.app.db.engine.begin() as db:
        db.execute(
            update(clients.connections)
            .where(clients.connections.c.client_id == "globex")
            .values(enabled=False)
        )
    answer = await ingress.deliver("globex", ingress.call("globex"))
    assert answer.status == 404
    assert await ingress.published() == []


async def test_missing_signature_is_401(ingress: Listener) -> None:
    call = ingress.call("initech")
    answer = await ingress.post(f"/webhooks/visma_net/{ingress.tokens['initech']}", data=call.body)
    assert answer.status == 401
    assert answer.body["error"] == "missing_signature"
    assert await ingress.published() == []
    assert rejected(ingress, "missing_signature") == 1


async def test_bad_signature_is_401(ingress: Listener) -> None:
    call = ingress.call("umbrella")
    answer = await ingress.post(
        f"/webhooks/uni_economy/{ingress.tokens['umbrella']}",
        data=call.body.replace(b"1042", b"1043"),
        headers=call.headers,
    )
    assert answer.status == 401
    assert answer.body["error"] == "bad_signature"
    assert await ingress.published() == []


async def test_stale_timestamp_is_401(ingress: Listener) -> None:
    answer = await ingress.deliver("acme", ingress.call("acme", ts=int(time.time()) - 3600))
    assert answer.status == 401
    assert answer.body["error"] == "stale_timestamp"
    assert await ingress.published() == []


async def test_malformed_body_is_400_with_the_reason(ingress: Listener) -> None:
    body = b'{"event": "customer.update"}'
    call = Call(body, signed_headers(body, ingress.secrets["globex"], idempotency_key="k1"))
    answer = await ingress.deliver("globex", call)
    assert answer.status == 400
    assert answer.body["error"] == "malformed"
    assert "numeric id" in answer.body["message"]
    assert await ingress.published() == []


async def test_a_change_with_a_nul_character_is_refused_before_anything_is_stored(
    ingress_any_db: Listener,
) -> None:
    """A vendor's event id (the delivery's receipt key) or value with a NUL, which PostgreSQL's text
    cannot hold: the change cannot be an envelope, so nothing is published nor any receipt written."""
    client = next(name for name, kind in CLIENTS.items() if kind == "visma_net")
    answer = await ingress_any_db.deliver(client, ingress_any_db.call(client, event_id="evt\x00-1"))
    assert answer.status == 400 and answer.body["error"] == "malformed", answer.body
    assert "unusable event id 'evt\\x00-1' (a control character in it)" in answer.body["message"]
    assert await ingress_any_db.published() == []


async def test_body_over_1_mib_is_413(ingress: Listener) -> None:
    answer = await ingress.deliver("globex", Call(b"x" * (MAX_BODY + 1), {}))
    assert answer.status == 413
    assert answer.body["error"] == "too_large"
    assert await ingress.published() == []


async def test_body_over_1_mib_without_content_length_is_413(ingress: Listener) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b"x" * 65536  # 1.25 MiB in all, sent chunked

    answer = await ingress.post(f"/webhooks/tripletex/{ingress.tokens['globex']}", data=chunks())
    assert answer.status == 413
    assert await ingress.published() == []


async def test_too_many_calls_on_one_token_is_429_with_retry_after(sqlite_url: str) -> None:
    async with listener(sqlite_url, rate_per_s=0.01, burst=2) as lst:
        answers = [await lst.deliver("globex", lst.call("globex")) for _ in range(3)]
        other = await lst.deliver("hooli", lst.call("hooli"))
        assert [a.status for a in answers] == [202, 202, 429]
        assert int(answers[2].headers["Retry-After"]) >= 1
        assert other.status == 202  # another token has its own bucket
        assert len(await lst.published()) == 3


# ── health, readiness, metrics ──────────────────────────────────────────────────────────────


async def test_healthz_and_readyz_answer_when_all_is_up(ingress: Listener) -> None:
    assert await ingress.get("/healthz") == (200, '{"status":"ok"}')
    assert await ingress.get("/readyz") == (200, '{"status":"ready"}')


async def test_the_admin_api_is_mounted_and_closed_without_a_key(ingress: Listener) -> None:
    status, body = await ingress.get("/admin/dlq")
    assert status in (401, 503) and "key" in body.lower()


@pytest.mark.parametrize("path", ["/admin/dlq/replay", "/admin/clients"])
@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_an_admin_body_over_the_bound_is_413_and_not_held(
    sqlite_url: str, path: str, declared: bool
) -> None:
    """An admin API body was read whole, however big, for any key (a viewer's too)."""
    size = MAX_REQUEST_BYTES + 1

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, size, 2**20):
            yield b"x" * min(2**20, size - start)

    headers = {"Content-Type": "application/x-www-form-urlencoded", "Authorization": "Bearer admin-key"}
    async with listener(sqlite_url, admin_api_key="admin-key") as lst:
        body: Any = b"x" * size if declared else chunks()
        async with lst.http.post(lst.url + path, data=body, headers=headers) as resp:
            assert (resp.status, await resp.json()) == (
                413,
                {"error": f"the request body is over {size - 1} bytes"},
            )
        async with lst.http.post(lst.url + path, data=b"x" * 1000, headers=headers) as resp:
            assert resp.status == 400, "a small one reaches the app (and is not JSON)"
        body = b"x" * size if declared else chunks()
        async with lst.http.post(lst.url + "/console/login", data=body, headers=headers) as resp:
            assert resp.status in (400, 413), (
                "the console's forms are bounded too"
            )  # 400: one field over 1 MiB


def _listener_port(app: App, metrics: Metrics) -> AbstractAsyncContextManager[str]:
    return serving(create_app(app, metrics))


def _worker_port(app: App, metrics: Metrics) -> AbstractAsyncContextManager[str]:
    return serving_health(app, metrics, listen("127.0.0.1", 0))


@pytest.mark.parametrize("serve", [_listener_port, _worker_port], ids=["listener", "worker-port"])
async def test_readyz_is_503_naming_what_is_down(
    serve: Callable[[App, Metrics], AbstractAsyncContextManager[str]],
) -> None:
    s = load_settings(database_url="postgresql+psycopg://postgres@127.0.0.1:9/none", secret_key=SECRET_KEY)
    async with (
        open_app(s) as app,
        serve(app, Metrics()) as url,
        aiohttp.ClientSession() as http,
    ):
        async with http.get(url + "/readyz") as resp:
            body = await resp.json()
        async with http.get(url + "/healthz") as health:
            pass
    assert resp.status == 503
    assert set(body["down"]) == {"database", "bus"}  # the local bus lives in that database
    # Told at once (the request fails fast on the outage), not after waiting it out.
    assert body["down"]["database"].startswith("DatabaseUnavailable: the database is not answering")
    assert health.status == 200


async def test_metrics_count_webhooks_and_the_in_process_worker(ingress: Listener) -> None:
    await ingress.deliver("globex", ingress.call("globex"))
    await ingress.post("/webhooks/tripletex/nope", ingress.call("globex"))
    await ingress.published()
    # the worker, metered as `cwi serve --worker` does, on a message it must dead-letter
    await ingress.app.bus.publish(
        [OutgoingMessage(body=b"not an envelope", message_id="m1", session_id="acme")]
    )
    async with open_app(ingress.app.settings, http=True) as app:
        worker = app.worker()
        worker.pipeline = MeteredPipeline(worker.pipeline, ingress.metrics)
        worker.on_settled = ingress.metrics.chain_settled(worker.on_settled)
        await worker.run(until_idle=True)
    status, text = await ingress.get("/metrics")
    assert status == 200
    for line in (
        'cwi_webhooks_received_total{provider="tripletex"} 2.0',
        'cwi_webhooks_accepted_total{client="globex",provider="tripletex"} 1.0',
        'cwi_webhooks_rejected_total{provider="tripletex",reason="unknown_token"} 1.0',
        # an envelope that does not parse names no provider; its client is the message's session
        'cwi_worker_received_total{client="acme",provider="none"} 1.0',
        'cwi_worker_dead_lettered_total{client="acme",provider="none",reason="InvalidEnvelope"} 1.0',
        "cwi_worker_in_flight 0.0",
        'cwi_worker_handler_seconds_count{provider="none"} 1.0',
    ):
        assert line in text, line


async def test_a_bus_that_cannot_take_the_envelopes_is_503_and_the_retry_is_published(
    ingress: Listener,
) -> None:
    bus_table = next(t for t in metadata.sorted_tables if t.name == "bus_messages")
    bus_table.drop(ingress.app.db.engine)
    call = ingress.call("globex", key="during-outage")
    answer = await ingress.deliver("globex", call)
    assert answer.status == 503
    assert answer.body["error"] == "unavailable"
    bus_table.create(ingress.app.db.engine)
    retry = await ingress.deliver("globex", call)  # no receipt was written: the retry is not a duplicate
    assert retry.status == 202 and len(retry.body["published"]) == 1
    assert len(await ingress.published()) == 1


def _signed(lst: Listener, client: str, body: bytes) -> Call:
    """``body`` signed as the client's ERP signs its calls."""
    from providers.generic_rest import webhooks as generic_rest
    from providers.tripletex import webhooks as tripletex
    from providers.uni_economy import webhooks as uni
    from providers.visma_net import webhooks as visma

    secret, kind = lst.secrets[client], CLIENTS[client]
    if kind == "tripletex":
        return Call(body, tripletex.signed_headers(body, secret, idempotency_key="deep-1"))
    if kind == "visma_net":
        return Call(body, visma.signed_headers(body, secret))
    if kind == "uni_economy":
        return Call(body, {"Content-Type": "application/json", **uni.sign(body, secret)})
    stamp = int(time.time())
    return Call(body, {"webhook-id": "msg_deep", "webhook-timestamp": str(stamp),
                       "webhook-signature": generic_rest.sign(secret, "msg_deep", stamp, body)})  # fmt: skip


@pytest.mark.parametrize("client", ["acme", "globex", "initech", "umbrella"])
async def test_a_signed_body_nested_past_any_webhook_is_malformed_not_a_retry(
    ingress: Listener, client: str
) -> None:
    """json.loads's RecursionError was "503 cannot take webhooks right now: retry", a traceback in
    the log, and the ERP retrying for ever."""
    deep = b"[" * 100_000 + b"]" * 100_000
    answer = await ingress.deliver(client, _signed(ingress, client, deep))
    assert answer.status == 400 and answer.body["error"] == "malformed", answer
    assert "nested" in answer.body["message"] or "recursion" in answer.body["message"], answer
