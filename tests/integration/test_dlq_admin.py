"""The admin API served by a real uvicorn on 127.0.0.1: the operator key, and every operation."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
import uvicorn

from config_db import sync_log
from config_db.database import make_engine
from tests.databases import sqlite_copy
from tests.integration.worker_rig import env
from worker.buses.base import OutgoingMessage
from worker.buses.local import LocalBus
from worker.db import Database
from worker.ingress.admin import admin_app

KEY = "op-key-5f2e9c"


@contextlib.asynccontextmanager
async def served(app: Any) -> AsyncIterator[str]:
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def db(tmp_path: Path, sqlite_templates: dict[str, Path]) -> AsyncIterator[Database]:
    database = Database(make_engine(sqlite_copy(sqlite_templates["schema"], tmp_path)))
    yield database
    await database.close()


@pytest.fixture
async def bus(db: Database) -> LocalBus:
    local = LocalBus(db)
    envs = [env(1), env(2), env(3, "globex")]
    await local.publish(
        [OutgoingMessage(json.dumps(e).encode(), f"t-{e['id']}", e["client_id"]) for e in envs]
    )
    for delivery in await local.receive(10, 0):
        await local.dead_letter(delivery, "MappingError", "no customer group")
    for delivery in await local.receive(10, 0):
        await local.dead_letter(delivery, "MappingError", "no customer group")
    return local


async def test_requests_without_the_operator_key_are_refused(
    db: Database, bus: LocalBus, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    async with served(admin_app(db, bus, api_key=KEY)) as url, aiohttp.ClientSession() as http:
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"X-Admin-Key": "wrong"},
            {"Authorization": KEY},
        ):
            async with http.get(f"{url}/dlq", headers=headers) as response:
                assert response.status == 401, headers
                assert "operator key" in (await response.json())["error"]
        async with http.post(f"{url}/dlq/purge", json={"ids": ["t-acme-e1"]}) as response:
            assert response.status == 401
    assert len(await bus.dead_letters()) == 3
    assert KEY not in caplog.text + "".join(capsys.readouterr())


async def test_without_a_configured_key_the_admin_api_refuses_everything(db: Database, bus: LocalBus) -> None:
    headers = {"Authorization": "Bearer anything"}
    async with (
        served(admin_app(db, bus, api_key=None)) as url,
        aiohttp.ClientSession() as http,
        http.get(f"{url}/dlq", headers=headers) as response,
    ):
        assert response.status == 503
        assert "CWI_ADMIN_API_KEY" in (await response.json())["error"]


async def test_list_show_replay_purge_with_the_key(db: Database, bus: LocalBus) -> None:
    bearer = {"Authorization": f"Bearer {KEY}"}
    async with served(admin_app(db, bus, api_key=KEY)) as url, aiohttp.ClientSession(headers=bearer) as http:
        async with http.get(f"{url}/dlq", params={"client": "acme"}) as response:
            listed = await response.json()
        assert listed["total"] == 2 and {m["id"] for m in listed["messages"]} == {"t-acme-e1", "t-acme-e2"}
        assert listed["summary"] == [{"client_id": "acme", "reason": "MappingError", "count": 2}]
        async with http.get(f"{url}/dlq", params={"since": "yesterday"}) as response:
            assert response.status == 422 and "since" in (await response.json())["error"]

        async with http.get(f"{url}/dlq/t-acme-e1", headers={"X-Admin-Key": KEY}) as response:
            shown = await response.json()
        assert shown["envelope"]["id"] == "acme-e1" and shown["description"] == "no customer group"
        async with http.get(f"{url}/dlq/t-nope") as response:
            assert response.status == 404

        async with http.post(
            f"{url}/dlq/replay", json={"all": True, "client": "acme", "dry_run": True}
        ) as response:
            dry = await response.json()
        assert dry["dry_run"] and len(dry["messages"]) == 2 and len(await bus.dead_letters()) == 3

        body = {"ids": ["t-acme-e1", "t-gone"], "operator": "erin"}
        async with http.post(f"{url}/dlq/replay", json=body) as response:
            replayed = await response.json()
        assert replayed["summary"] == {"replayed": 1, "skipped": 1, "failed": 0}
        async with http.post(f"{url}/dlq/replay", json={}) as response:
            assert response.status == 400

        async with http.post(f"{url}/dlq/purge", json={"older_than": "0s", "client": "globex"}) as response:
            purged = await response.json()
        assert purged["summary"] == {"purged": 1, "skipped": 0, "failed": 0}

    assert [x.message_id for x in await bus.dead_letters()] == ["t-acme-e2"]
    log = db.run_sync(lambda c: sync_log.entries(c))
    operator = [
        (r["action"], json.loads(cast(str, r["detail"]))["operator"])
        for r in log
        if r["direction"] == "operator"
    ]
    assert sorted(operator) == [("purged", "admin-api"), ("replayed", "erin")]


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("GET", "/admin/dlq?limit=-1", None, "limit"),
        ("GET", "/admin/dlq?limit=abc", None, "limit"),
        ("GET", "/admin/dlq?reason=NoSuchReason", None, "reason"),
        ("GET", "/admin/dlq?colour=red", None, "colour"),
        ("POST", "/admin/dlq/replay", {"all": True, "limit": -1}, "limit"),
        ("POST", "/admin/dlq/replay", {"all": True, "limit": [1]}, "limit"),
        ("POST", "/admin/dlq/replay", {"all": True, "limit": 1e400}, "limit"),
        ("POST", "/admin/dlq/replay", {"all": "yes"}, "all"),
        ("POST", "/admin/dlq/purge", {"older_than": "soon"}, "duration"),
        ("POST", "/admin/dlq/replay", {"all": True, "reason": "Nope"}, "reason"),
    ],
)
async def test_every_parameter_is_validated_422_naming_the_field_never_500(
    db: Database, bus: LocalBus, method: str, path: str, body: Any, field: str
) -> None:
    bearer = {"Authorization": f"Bearer {KEY}"}
    async with served(admin_app(db, bus, api_key=KEY)) as url, aiohttp.ClientSession(headers=bearer) as http:
        data = None if body is None else json.dumps(body).encode()
        async with http.request(method, url + path.removeprefix("/admin"), data=data) as resp:
            answer = await resp.json()
            assert resp.status == 422, (resp.status, answer)
            assert field in answer["error"], answer
    assert len(await bus.dead_letters()) == 3, "nothing replayed or purged"
