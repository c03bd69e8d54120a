"""The admin API's console operations over real HTTP: roles, provisioning, failure groups,
the record timeline, edit and retry validation, and the OpenAPI document."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from openapi_spec_validator import validate
from starlette.routing import Route

from tests.integration.test_dlq_admin import db, served

__all__ = ["db"]  # the fixture: a fresh SQLite database
from worker.buses.base import OutgoingMessage
from worker.buses.local import LocalBus
from worker.db import Database
from worker.ingress.admin import admin_app
from worker.ingress.openapi import openapi_document
from worker.operators.failures import fingerprint
from worker.settings import Settings

ADMIN, OPERATOR, VIEWER = "adm-key-1", "op-key-2", "view-key-3"


def settings(**extra: Any) -> Settings:
    return Settings(
        admin_api_key=ADMIN,
        operator_api_key=OPERATOR,
        viewer_api_key=VIEWER,
        secret_key="s3cr3t-key",
        **extra,
    )


async def dead(bus: LocalBus, client: str, n: int, description: str, **data: Any) -> None:
    env = {
        "id": f"{client}-e{n}", "client_id": client, "type": "customer.created", "source": "frontend",
        "occurred_at": "2026-11-23T10:00:00Z",
        "data": {"id": f"{client}-c{n}", "number": str(n), "name": f"C{n}", **data},
    }  # fmt: skip
    await bus.publish([OutgoingMessage(json.dumps(env).encode(), f"t-{env['id']}", client)])
    for delivery in await bus.receive(10, 0):
        await bus.dead_letter(delivery, "ProviderRejected", description)


def test_the_fingerprint_masks_ids_numbers_and_quoted_values() -> None:
    a = fingerprint("PUT customer/acme-c1: HTTP 422: org '123' (id 9b0c2d3e-0000-4000-8000-000000000001)")
    b = fingerprint("PUT customer/acme-c77: HTTP 422: org '987654' (id 1b0c2d3e-0000-4000-8000-00000000000f)")
    assert a == b and "<n>" in a and "<value>" in a and "<id>" in a


def test_every_route_is_in_the_valid_openapi_document(db: Database) -> None:
    document = openapi_document()
    validate(document)
    app = admin_app(db, LocalBus(db), settings())
    paths = {r.path.replace(":path", "").replace(":str", "") for r in app.routes if isinstance(r, Route)}
    assert paths == set(document["paths"])


async def test_roles_provisioning_groups_and_timeline(db: Database) -> None:
    bus = LocalBus(db)
    await dead(bus, "acme", 1, "HTTP 422: org_number '1' refused")
    await dead(bus, "acme", 2, "HTTP 422: org_number '22' refused")
    async with served(admin_app(db, bus, settings())) as url, aiohttp.ClientSession() as http:

        def as_(key: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {key}"}

        async with http.post(f"{url}/clients", json={"id": "acme"}, headers=as_(OPERATOR)) as r:
            assert r.status == 403 and "admin role" in (await r.json())["error"]
        for bad in ({"id": 5}, {"id": "acme", "name": ["Acme"]}, {"id": "acme", "name": "Acme\u0000"}):
            async with http.post(f"{url}/clients", json=bad, headers=as_(ADMIN)) as r:
                assert r.status == 400, bad
        async with http.post(f"{url}/clients", json={"id": "acme", "name": "Acme"}, headers=as_(ADMIN)) as r:
            assert r.status == 201
        body: dict[str, Any] = {"kind": "generic_rest", "base_url": "http://127.0.0.1:9"}
        body.update(credentials={"token": "tok-secret-1"}, settings={"timeout_s": "never"})
        async with http.put(f"{url}/clients/acme/connection", json=body, headers=as_(ADMIN)) as r:
            refused = await r.json()
        assert r.status == 400 and "cwi connections set acme generic_rest" in refused["problems"][0]
        del body["settings"]
        async with http.put(f"{url}/clients/acme/connection", json=body, headers=as_(ADMIN)) as r:
            saved = await r.json()
        assert saved["credentials"] == {"token": "set"} and "tok-secret-1" not in json.dumps(saved)

        async with http.get(f"{url}/failures", headers=as_(VIEWER)) as r:
            groups = (await r.json())["groups"]
        assert len(groups) == 1 and groups[0]["count"] == 2 and groups[0]["provider"] == "generic_rest"
        key = groups[0]["key"]
        async with http.post(f"{url}/failures/{key}/retry", json={}, headers=as_(VIEWER)) as r:
            assert r.status == 403
        async with http.post(f"{url}/failures/{key}/dry-run", json={}, headers=as_(VIEWER)) as r:
            assert [m["would"] for m in (await r.json())["messages"]] == ["replay", "replay"]
        async with http.post(f"{url}/failures/{key}/purge", json={}, headers=as_(OPERATOR)) as r:
            assert r.status == 400 and "confirm" in (await r.json())["error"]
        edited = {"envelope": {"id": "acme-e1", "client_id": "acme", "type": "customer.created",
                               "source": "frontend", "occurred_at": "2026-11-23T10:00:00Z",
                               "data": {"id": "acme-c1", "number": "1", "name": ""}}}  # fmt: skip
        async with http.post(f"{url}/dlq/t-acme-e1/edit", json=edited, headers=as_(OPERATOR)) as r:
            assert r.status == 400 and "CWI_CONSOLE_EDIT_RETRY" in (await r.json())["error"]
        async with http.post(f"{url}/failures/{key}/retry", json={}, headers=as_(OPERATOR)) as r:
            assert [m["status"] for m in (await r.json())["messages"]] == ["replayed", "replayed"]

        async with http.get(f"{url}/records/acme/customer/acme-c1", headers=as_(VIEWER)) as r:
            life = await r.json()
        assert [s["action"] for s in life["timeline"]] == ["replayed"]
        async with http.get(f"{url}/audit", headers=as_(VIEWER)) as r:
            actions = [e["action"] for e in (await r.json())["entries"]]
        assert {"client_added", "connection_saved", "replayed"} <= set(actions)
        async with http.get(f"{url}/openapi.json", headers=as_(VIEWER)) as r:
            assert (await r.json())["openapi"] == "3.1.0"


async def test_edit_and_retry_validates_against_the_contract(db: Database) -> None:
    bus = LocalBus(db)
    await dead(bus, "acme", 1, "HTTP 422: name")
    async with (
        served(admin_app(db, bus, settings(console_edit_retry=True))) as url,
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {OPERATOR}"}) as http,
    ):
        envelope: dict[str, Any] = {"id": "acme-e1", "client_id": "acme", "type": "customer.created"}
        envelope.update(source="frontend", occurred_at="2026-11-23T10:00:00Z")
        envelope["data"] = {"id": "acme-c1", "number": "1", "name": ""}
        async with http.post(f"{url}/dlq/t-acme-e1/edit", json={"envelope": envelope}) as r:
            refused = await r.json()
        assert r.status == 400 and any(p.startswith("data.name") for p in refused["problems"])
        envelope["data"]["name"] = "Fixed AS"
        async with http.post(f"{url}/dlq/t-acme-e1/edit", json={"envelope": envelope}) as r:
            done = await r.json()
        assert done["changes"] == [{"field": "data.name", "before": "C1", "after": "Fixed AS"}]
    assert await bus.dead_letters() == []
    sent = await bus.receive(10, 0)
    body = json.loads(sent[0].body)
    assert body["source"] == "operator" and body["id"] != "acme-e1" and body["data"]["name"] == "Fixed AS"
    assert sent[0].properties["cwi-edit-of"] == "t-acme-e1"
