"""The console's subscriptions pages over real HTTP (no browser: forms posted as a browser would):
add one (the secret shown once, refusals named), pause, rotate, roles and CSRF."""

from __future__ import annotations

import re

import aiohttp
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from config_db import clients
from tests.integration.test_console_api import ADMIN, VIEWER, settings
from tests.integration.test_dlq_admin import db, served
from worker.buses.local import LocalBus
from worker.console.app import console_app
from worker.db import Database

__all__ = ["db"]  # the fixture: a fresh SQLite database
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


async def log_in(http: aiohttp.ClientSession, url: str, key: str) -> None:
    async with http.get(f"{url}/console/login") as r:
        token = CSRF.search(await r.text())
    assert token is not None
    form = {"csrf_token": token.group(1), "key": key, "next": "/console/subscriptions"}
    async with http.post(f"{url}/console/login", data=form) as r:
        assert r.status == 200 and "Webhook subscriptions" in await r.text()


async def page(http: aiohttp.ClientSession, url: str) -> tuple[int, str, str]:
    async with http.get(url) as r:
        text = await r.text()
    found = CSRF.search(text)
    return r.status, text, found.group(1) if found else ""


async def test_subscriptions_pages(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CWI_PUBLISHER_ALLOW_HTTP", "true")
    db.run_sync(lambda conn: clients.add_client(conn, "acme", "Acme"))
    app = Starlette(routes=[Mount("/console", console_app(db, LocalBus(db), settings()))])
    async with served(app) as url:
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as http:
            await log_in(http, url, ADMIN)
            _, listing, csrf = await page(http, f"{url}/console/subscriptions")
            assert "No subscriptions." in listing and 'id="add-subscription"' in listing
            form = {
                "csrf_token": csrf,
                "client_id": "acme",
                "url": "http://10.0.0.7/hooks",
                "events": "invoice.*",
            }
            async with http.post(f"{url}/console/subscriptions", data=form) as r:
                refused = await r.text()
            assert r.status == 422 and "10.0.0.7 is a private address" in refused
            form.update(url="http://93.184.215.14/hooks", fields="number, name")
            async with http.post(f"{url}/console/subscriptions", data=form) as r:
                added = await r.text()
            assert r.status == 201
            secret = re.search(r'<code id="secret">(whsec_[^<]+)</code>', added)
            sub_id = re.search(r'href="/console/subscriptions/(sub_[0-9a-f]+)"', added)
            assert secret is not None and sub_id is not None
            detail = f"{url}/console/subscriptions/{sub_id.group(1)}"
            status, shown, csrf = await page(http, detail)
            assert status == 200 and secret.group(1) not in shown, "shown once, never again"
            assert "No deliveries." in shown and "fields number, name" in shown

            async with http.post(detail, data={"csrf_token": csrf, "action": "pause"}) as r:
                paused = await r.text()
            assert "paused by" in paused and "Resume (deliver the backlog)" in paused
            async with http.post(detail, data={"csrf_token": csrf, "action": "rotate"}) as r:
                rotated = await r.text()
            new = re.search(r'<code id="secret">(whsec_[^<]+)</code>', rotated)
            assert (
                new is not None and new.group(1) != secret.group(1) and "previous secret signs too" in rotated
            )
            async with http.post(detail, data={"action": "resume"}) as r:
                assert r.status == 403 and "CSRF" in await r.text()

        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            await log_in(http, url, VIEWER)
            status, viewed, csrf = await page(http, detail)
            assert status == 200 and 'id="rotate"' not in viewed and 'id="toggle"' not in viewed
            async with http.post(detail, data={"csrf_token": csrf, "action": "resume"}) as r:
                assert r.status == 403 and "operator role" in await r.text()


async def test_console_pages_may_not_be_framed_nor_sniffed(db: Database) -> None:
    """Framed by another site under a decoy, a signed-in operator's click could replay or purge."""
    app = Starlette(routes=[Mount("/console", console_app(db, LocalBus(db), settings()))])
    async with served(app) as url, aiohttp.ClientSession() as http:
        for path in ("/console/login", "/console/failures", "/console/static/console.css"):
            async with http.get(url + path, allow_redirects=False) as r:
                assert r.headers.get("X-Frame-Options") == "DENY", path
                assert r.headers.get("Content-Security-Policy") == "frame-ancestors 'none'", path
                assert r.headers.get("X-Content-Type-Options") == "nosniff", path
