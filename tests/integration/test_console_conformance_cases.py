"""The console's conformance form over real HTTP: the generated cases a run in a page's request may
ask for are bounded on the server too (a form posted by hand), and the form says the same bound."""

from __future__ import annotations

import re

import aiohttp
from starlette.applications import Starlette
from starlette.routing import Mount

from tests.integration.test_console_api import ADMIN, settings
from tests.integration.test_dlq_admin import db, served
from tests.integration.test_subscriptions_console import log_in, page
from worker.buses.local import LocalBus
from worker.console.app import console_app
from worker.console.views_admin import CONSOLE_MAX_EXAMPLES
from worker.db import Database

__all__ = ["db"]  # the fixture: a fresh SQLite database


async def test_a_console_run_asks_for_at_most_the_forms_bound_of_generated_cases(db: Database) -> None:
    app = Starlette(routes=[Mount("/console", console_app(db, LocalBus(db), settings()))])
    jar = aiohttp.CookieJar(unsafe=True)
    async with served(app) as url, aiohttp.ClientSession(cookie_jar=jar) as http:
        await log_in(http, url, ADMIN)
        _, _, csrf = await page(http, f"{url}/console/providers")
        form = [
            ("csrf_token", csrf),
            ("name", "acme-erp"),
            ("base_url_template", "http://{host}"),
            ("auth_scheme", "bearer"),
            ("webhook_signing", "standard-webhooks"),
            ("entities", "customer"),
            ("actions", "created"),
        ]
        async with http.post(f"{url}/console/providers", data=form) as r:
            assert r.status == 200 and "Provider acme-erp" in await r.text()
        status, shown, csrf = await page(http, f"{url}/console/providers/acme-erp")
        field = re.search(r'<input type="number" id="examples"[^>]*>', shown)
        assert status == 200 and field is not None
        assert f'max="{CONSOLE_MAX_EXAMPLES}"' in field.group(0)

        run = {"csrf_token": csrf, "placeholder.host": "127.0.0.1:1", "token": "t"}
        for asked in (str(CONSOLE_MAX_EXAMPLES + 1), "1000"):
            async with http.post(
                f"{url}/console/providers/acme-erp/validate", data={**run, "examples": asked}
            ) as r:
                refused = await r.text()
            assert r.status == 422, refused
            assert f"examples must be a whole number from 0 to {CONSOLE_MAX_EXAMPLES}, not {int(asked)}" in (
                refused.replace("&#39;", "'")
            )
            assert "Traceback" not in refused
