"""The metrics every process exports: the worker's own port (health, readiness during a database
outage), the bus's depth sampled, and what the providers' HTTP reports per connection (latency,
429s, rate-limit waits) against a real vendor fake."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CONTENT_TYPE_LATEST

from providers import reporting
from providers.base import ConnectionSpec
from providers.errors import TransientError
from providers.tripletex import TripletexProvider
from tests.fakes import serve_app
from tests.fakes.tripletex import FakeTripletex
from tests.integration.provider_contract import change
from tests.integration.tripletex_rig import CREDENTIALS, CUSTOMER, SETTINGS
from worker.bootstrap import open_app
from worker.buses.base import OutgoingMessage
from worker.health_port import serving_health
from worker.metrics import Metrics
from worker.observing import sample_bus
from worker.settings import load_settings
from worker.sockets import listen


def value(metrics: Metrics, name: str, **labels: str) -> float:
    """The sum of the samples ``name`` whose labels include ``labels``."""
    return sum(
        sample.value
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


async def test_the_worker_s_port_serves_health_readiness_and_metrics(sqlite_url: str) -> None:
    metrics = Metrics()
    async with (
        open_app(load_settings(database_url=sqlite_url)) as app,
        serving_health(app, metrics, listen("127.0.0.1", 0)) as url,
        aiohttp.ClientSession() as http,
    ):
        answers = {}
        for path in ("/healthz", "/readyz", "/metrics", "/webhooks/generic_rest/x"):
            async with http.get(url + path) as resp:
                answers[path] = (resp.status, await resp.text(), resp.headers)
        async with http.post(url + "/metrics") as posted:
            pass
    assert answers["/healthz"][:2] == (200, '{"status":"ok"}')
    assert answers["/readyz"][:2] == (200, '{"status":"ready"}')
    assert answers["/readyz"][2]["Content-Type"] == "application/json; charset=utf-8"
    status, text, headers = answers["/metrics"]
    assert status == 200 and "cwi_worker_in_flight 0.0" in text
    assert headers["Content-Type"] == CONTENT_TYPE_LATEST, "what Prometheus negotiates on"
    assert answers["/webhooks/generic_rest/x"][0] == 404, "only health, readiness and metrics there"
    assert posted.status == 405
    assert {a[2]["Server"] for a in answers.values()} == {"cwi"}, "no server name and version given away"


async def test_the_bus_depth_is_sampled_into_gauges(sqlite_url: str) -> None:
    metrics = Metrics()
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    async with open_app(load_settings(database_url=sqlite_url)) as app:
        await app.bus.publish(
            [
                OutgoingMessage(b"{}", "a1", "acme"),
                OutgoingMessage(b"{}", "a2", "acme"),
                OutgoingMessage(b"{}", "s1", "acme", scheduled_at=later),
                OutgoingMessage(b"{}", "d1", "globex"),
            ]
        )
        for delivery in await app.bus.receive(10, 0.1):
            if delivery.message_id == "d1":
                await app.bus.dead_letter(delivery, "InvalidEnvelope", "not an envelope")
            else:
                await app.bus.abandon(delivery)
        sampler = asyncio.create_task(sample_bus(app.bus, metrics, 0.05))
        try:
            for _ in range(200):  # until the first sample lands
                if value(metrics, "cwi_bus_sampled_timestamp_seconds") > 0:
                    break
                await asyncio.sleep(0.01)
        finally:
            sampler.cancel()
    assert value(metrics, "cwi_bus_messages", state="active") == 2
    assert value(metrics, "cwi_bus_messages", state="scheduled") == 1
    assert value(metrics, "cwi_bus_messages", state="dead_lettered") == 1
    assert value(metrics, "cwi_bus_dead_lettered_by_reason", reason="InvalidEnvelope") == 1


@pytest.fixture
async def reported() -> AsyncIterator[Metrics]:
    metrics = Metrics(max_clients=1)
    stop = reporting.on_http(metrics)
    try:
        yield metrics
    finally:
        stop()


async def test_erp_latency_429s_and_rate_waits_are_reported_per_connection(reported: Metrics) -> None:
    fake = FakeTripletex()
    async with serve_app(fake.app()) as url, aiohttp.ClientSession() as http:
        fake.base_url = f"{url}/v2"

        def make(client: str) -> TripletexProvider:
            return TripletexProvider(
                ConnectionSpec(client, "tripletex", fake.base_url, SETTINGS, CREDENTIALS), http
            )

        acme, globex = make("acme"), make("globex")
        fake.fail_next(1, 429, reset=1)
        with pytest.raises(TransientError):
            await acme.push(change(CUSTOMER))
        await acme.push(change(CUSTOMER))  # waits for the window the 429 closed, then goes
        await globex.push(change(CUSTOMER))
    acme_labels = {"provider": "tripletex", "client": "acme"}
    assert value(reported, "cwi_erp_rate_limited_total", **acme_labels) == 1
    assert value(reported, "cwi_erp_requests_total", status="429", **acme_labels) == 1
    assert value(reported, "cwi_erp_requests_total", status="2xx", **acme_labels) >= 2
    assert value(reported, "cwi_erp_rate_waits_total", limit="erp", **acme_labels) == 1
    assert value(reported, "cwi_erp_rate_wait_seconds_total", limit="erp", **acme_labels) > 0
    requests = value(reported, "cwi_erp_requests_total")
    assert value(reported, "cwi_erp_request_seconds_count", provider="tripletex") == requests
    # One client label allowed: the second client met is "other", and no request goes uncounted.
    assert value(reported, "cwi_erp_requests_total", client="globex") == 0
    assert value(reported, "cwi_erp_requests_total", client="other", status="2xx") >= 2


DOCKERFILE = Path(__file__).resolve().parents[2] / "Dockerfile"


def _instruction(name: str) -> str:
    """The Dockerfile's instructions ``name`` (continuation lines joined), as one line."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    return " ".join(
        line.removeprefix(name + " ").strip() for line in text.splitlines() if line.startswith(name + " ")
    )


def test_the_image_declares_its_port_and_keeps_its_sqlite_database_where_its_user_writes() -> None:
    env = dict(re.findall(r"(\w+)=(\S+)", _instruction("ENV")))
    port = env["CWI_METRICS_PORT"]
    assert port in _instruction("EXPOSE").split() and env["CWI_METRICS_HOST"] == "0.0.0.0"
    database = env["CWI_DATABASE_URL"].removeprefix("sqlite:///")
    user = _instruction("USER")
    run = DOCKERFILE.read_text().replace("\\\n", " ")
    assert f"chown {user}:{user} {Path(database).parent}" in run  # the directory of the default database
    assert "tracing" in _instruction("RUN pip install --no-cache-dir").split("[")[1]


async def test_the_image_s_healthcheck_passes_against_the_worker_s_port_and_fails_without_it(
    sqlite_url: str,
) -> None:
    command = json.loads(_instruction("HEALTHCHECK").split(" CMD ", 1)[1])
    assert command[0] == "python"
    command[0] = sys.executable

    async def check(port: int) -> int:
        env = {**os.environ, "CWI_METRICS_PORT": str(port)}
        proc = await asyncio.create_subprocess_exec(
            *command, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        return await proc.wait()

    async with open_app(load_settings(database_url=sqlite_url)) as app:
        async with serving_health(app, Metrics(), listen("127.0.0.1", 0)) as url:
            port = int(url.rsplit(":", 1)[1])
            assert await check(port) == 0
        assert await check(port) != 0  # nothing listens there any more
