"""A value the database refuses (PostgreSQL: a NUL character in text) is a 400 with one line, in the
admin API and in the console, never a 500 with a traceback in the log."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import aiohttp
import pytest
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.routing import Mount

from config_db.database import make_engine
from config_db.models import sync_log
from tests.integration.test_console_api import ADMIN, VIEWER, settings
from tests.integration.test_dlq_admin import served
from tests.integration.test_subscriptions_console import log_in
from tests.memory_sides import Sides
from worker.buses.base import OutgoingMessage
from worker.buses.local import LocalBus
from worker.console.app import console_app
from worker.db import Database
from worker.ingress.admin import admin_app
from worker.messaging.outcomes import Complete, Retry

NUL = "a\x00b"


@pytest.fixture
async def database(db_url: str) -> AsyncIterator[Database]:
    db = Database(make_engine(db_url))
    yield db
    await db.close()


async def test_a_nul_character_in_a_search_or_a_record_is_one_line(database: Database) -> None:
    postgres = database.engine.dialect.name == "postgresql"
    api = served(admin_app(database, LocalBus(database), settings()))
    console = served(
        Starlette(routes=[Mount("/console", console_app(database, LocalBus(database), settings()))])
    )
    async with (
        api as url,
        console as site,
        aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http,
    ):
        viewer = {"Authorization": f"Bearer {VIEWER}"}
        for path, params in (
            ("/records", {"client": "acme", "q": NUL}),
            (f"/records/acme/customer/{NUL}", {}),
        ):
            async with http.get(f"{url}{path}", params=params, headers=viewer) as r:
                said = await r.json()
            if postgres:
                assert r.status == 400 and "NUL" in said["error"] and "SELECT" not in said["error"], said
            else:
                assert r.status == 200, said  # SQLite stores and compares NUL: nothing found
        await log_in(http, site, VIEWER)
        async with http.get(f"{site}/console/records", params={"client": "acme", "q": NUL}) as r:
            page = await r.text()
        assert r.status == (400 if postgres else 200), page[:300]
        if postgres:
            assert "the database refused a value of the request" in page and "NUL" in page


async def test_an_erps_error_text_with_a_nul_character_is_journalled(database: Database) -> None:
    """The ERP's own words go into the sync log's detail: a NUL there must not fail the journal
    (on PostgreSQL it failed the retry's settlement on every delivery)."""
    sides = Sides(database)
    sides.erp.faults.append("nul")
    outcome = await sides.handle(sides.cw_change("Acme"))
    assert isinstance(outcome, Retry), outcome
    retries = select(sync_log.c.detail).where(sync_log.c.action == "retry")
    details = database.run_sync(lambda conn: conn.execute(retries).scalars().all())
    assert details == ["retry in 1 s: HTTP 503: upstream said \\u0000 and stopped"], details
    assert await sides.handle_retry(sides.cw_change("Acme")) == Complete("created")


async def test_values_longer_than_their_columns_are_refused_with_the_bound_on_every_database(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL refused each with "database error: DataError: value too long" (SQLite kept it):
    a client's name, a connection's base URL, a definition's URL template, a subscription's
    description."""
    monkeypatch.setenv("CWI_PUBLISHER_ALLOW_PRIVATE", "true")
    monkeypatch.setenv("CWI_PUBLISHER_ALLOW_HTTP", "true")
    long_url = "http://127.0.0.1:9/" + "a" * 1100
    async with (
        served(admin_app(database, LocalBus(database), settings())) as url,
        aiohttp.ClientSession() as http,
    ):
        admin = {"Authorization": f"Bearer {ADMIN}"}

        async def said(method: str, path: str, body: Mapping[str, object]) -> tuple[int, str]:
            async with http.request(method, f"{url}{path}", json=body, headers=admin) as r:
                return r.status, str((await r.json()).get("error", "")) + str(
                    (await r.json()).get("problems", "")
                )

        assert await said("POST", "/clients", {"id": "acme", "name": "A" * 256}) == (
            400,
            "client name must be at most 255 characters, without control characters",
        )
        assert (await said("POST", "/clients", {"id": "acme"}))[0] == 201
        deep = b"[" * 100_000 + b"]" * 100_000  # json.loads's RecursionError: a 500 before
        async with http.post(f"{url}/clients", data=deep, headers=admin) as r:
            assert r.status == 400 and "JSON object" in (await r.json())["error"]
        status, error = await said(
            "PUT", "/clients/acme/connection", {"kind": "generic_rest", "base_url": long_url}
        )
        assert status == 400 and "longer than 1024 characters" in error, error
        definition = {"base_url_template": long_url, "entities": ["customer"], "actions": ["created"]}
        status, error = await said("PUT", "/providers/acme-erp", definition)
        assert status == 400 and "base_url_template: at most 1024 characters" in error, error
        subscription = {"client_id": "acme", "url": "http://127.0.0.1:9/hooks", "events": ["*"]}
        status, error = await said("POST", "/subscriptions", {**subscription, "description": "d" * 256})
        assert status == 400 and "description is longer than 255 characters" in error, error
        assert (await said("POST", "/subscriptions", {**subscription, "description": "d" * 255}))[0] == 201


async def test_a_dead_letter_nested_past_recursion_is_shown_as_text(database: Database) -> None:
    """The letter page pretty-printed its body with json.loads: a RecursionError, the page a 500."""
    bus = LocalBus(database)
    deep = b"[" * 100_000 + b"]" * 100_000
    await bus.publish([OutgoingMessage(deep, "t-deep", "acme")])
    [delivery] = await bus.receive(1, 0)
    await bus.dead_letter(delivery, "InvalidEnvelope", "the message is not JSON: nested too deep")
    console = served(Starlette(routes=[Mount("/console", console_app(database, bus, settings()))]))
    async with console as site, aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        await log_in(http, site, VIEWER)
        async with http.get(f"{site}/console/letters/t-deep") as r:
            page = await r.text()
    assert r.status == 200, page[:300]
    assert "[[[[" in page and "InvalidEnvelope" in page
