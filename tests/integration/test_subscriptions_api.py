"""The admin API's webhook subscriptions over real HTTP: roles, the secret shown once, rotation,
pause and resume, the delivery log, one-line refusals."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from config_db import clients
from tests.integration.test_console_api import ADMIN, OPERATOR, VIEWER, settings
from tests.integration.test_dlq_admin import db, served
from worker.buses.local import LocalBus
from worker.db import Database
from worker.ingress.admin import admin_app

__all__ = ["db"]  # the fixture: a fresh SQLite database


def as_(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_subscriptions_through_the_admin_api(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CWI_PUBLISHER_ALLOW_PRIVATE", "true")
    monkeypatch.setenv("CWI_PUBLISHER_ALLOW_HTTP", "true")
    db.run_sync(lambda conn: clients.add_client(conn, "acme", "Acme"))
    new = {
        "client_id": "acme",
        "url": "http://127.0.0.1:9/hooks",
        "events": ["invoice.*"],
        "fields": ["number"],
    }
    async with served(admin_app(db, LocalBus(db), settings())) as url, aiohttp.ClientSession() as http:

        async def call(method: str, path: str, key: str, body: Any = None) -> tuple[int, Any]:
            async with http.request(method, f"{url}{path}", json=body, headers=as_(key)) as r:
                return r.status, await r.json()

        status, refused = await call("POST", "/subscriptions", OPERATOR, new)
        assert status == 403 and "admin role" in refused["error"]
        status, added = await call("POST", "/subscriptions", ADMIN, new)
        assert status == 201 and added["secret"].startswith("whsec_")
        sub = added["subscription"]
        assert (sub["client_id"], sub["events"], sub["fields"], sub["status"]) == (
            "acme",
            ["invoice.*"],
            ["number"],
            "active",
        )
        path = f"/subscriptions/{sub['id']}"
        status, shown = await call("GET", path, VIEWER)
        assert status == 200 and added["secret"] not in str(shown) and shown["deliveries"] == {}
        status, listed = await call("GET", "/subscriptions?client=acme", VIEWER)
        assert [s["id"] for s in listed["subscriptions"]] == [sub["id"]]

        status, rotated = await call("POST", f"{path}/rotate-secret", ADMIN, {"grace_s": 60})
        assert status == 200 and rotated["secret"] != added["secret"] and rotated["previous_valid_until"]
        status, _ = await call("POST", f"{path}/pause", VIEWER)
        assert status == 403
        status, paused = await call("POST", f"{path}/pause", OPERATOR)
        assert paused["status"] == "paused" and "paused by" in paused["paused_reason"]
        status, resumed = await call("POST", f"{path}/resume", OPERATOR)
        assert (resumed["status"], resumed["woken"]) == ("active", 0)
        status, log = await call("GET", f"{path}/deliveries?status=delivered&limit=5", VIEWER)
        assert (status, log) == (200, {"deliveries": []})

        for body, problem in (
            ({**new, "events": ["invoice.paid"]}, "must be <entity>.<action>"),
            ({**new, "url": "ftp://example.com/x"}, "http:// or https://"),
            ({**new, "client_id": "nobody"}, "no client 'nobody'"),
            ({**new, "events": "invoice.*"}, "events must be a list"),
        ):
            status, answer = await call("POST", "/subscriptions", ADMIN, body)
            assert status == 400 and problem in answer["error"], answer
        for grace in (1e12, float("nan"), -1):  # a date beyond what one holds: once a 500
            status, answer = await call("POST", f"{path}/rotate-secret", ADMIN, {"grace_s": grace})
            assert status == 400 and "grace period" in answer["error"], answer
        status, answer = await call("GET", f"{path}/deliveries?status=lost", VIEWER)
        assert status == 400 and "status must be one of" in answer["error"]

        status, removed = await call("DELETE", path, ADMIN)
        assert (status, removed) == (200, {"dropped": 0})
        status, gone = await call("GET", path, VIEWER)
        assert status == 404 and "no subscription" in gone["error"]
        status, audit = await call("GET", "/audit?client=acme", VIEWER)
        actions = {e["action"] for e in audit["entries"]}
        assert {
            "subscription_added",
            "subscription_rotated",
            "subscription_paused",
            "subscription_removed",
        } <= actions
        assert added["secret"] not in str(audit) and rotated["secret"] not in str(audit)
