"""The listener over real HTTP for tests: clients with webhook endpoints, signed calls per provider."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from config_db import clients, webhooks
from config_db.secrets import SecretBox
from providers.generic_rest import webhooks as generic_rest
from providers.registry import WEBHOOK_SECRETS
from providers.tripletex import webhooks as tripletex
from providers.uni_economy import webhooks as uni
from providers.visma_net import webhooks as visma
from worker.bootstrap import App, open_app
from worker.ingress.app import create_app
from worker.ingress.ratelimit import RateLimiter
from worker.ingress.server import serving
from worker.metrics import Metrics
from worker.settings import load_settings

SECRET_KEY = "ingress-test-key-0123456789"

# client id → provider kind; two tripletex clients for the isolation tests
CLIENTS = {
    "acme": "generic_rest",
    "globex": "tripletex",
    "hooli": "tripletex",
    "initech": "visma_net",
    "umbrella": "uni_economy",
}


@dataclass(frozen=True)
class Call:
    body: bytes
    headers: dict[str, str]


def generic_rest_call(
    secret: str, *, external_id: str = "GR-1", msg_id: str | None = None, ts: int | None = None
) -> Call:
    body = json.dumps(
        {
            "type": "customer.updated",
            "timestamp": "2026-11-23T10:00:00+00:00",
            "data": {
                "entity": "customer",
                "external_id": external_id,
                "version": 2,
                "record": {"name": "Acme"},
            },
        }
    ).encode()
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    stamp = int(time.time()) if ts is None else ts
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": generic_rest.sign(secret, msg_id, stamp, body),
    }
    return Call(body, headers)


def tripletex_call(secret: str, *, obj_id: int = 4711, key: str | None = None) -> Call:
    body = json.dumps(
        {"subscriptionId": 1, "event": "customer.update", "id": obj_id, "value": {"id": obj_id, "version": 3}}
    ).encode()
    return Call(body, tripletex.signed_headers(body, secret, idempotency_key=key or str(uuid.uuid4())))


def visma_call(secret: str, *, entity_id: str = "10001", event_id: str | None = None) -> Call:
    body = json.dumps(
        {"event": "Customer.Updated", "entityId": entity_id, "id": event_id or f"evt-{uuid.uuid4().hex}"}
    ).encode()
    return Call(body, visma.signed_headers(body, secret))


def uni_call(secret: str, *, entity_id: int = 1042, ts: int | None = None) -> Call:
    body = json.dumps(
        {"EntityName": "Customer", "EventType": "Update", "EntityID": entity_id, "Entity": {"ID": entity_id}}
    ).encode()
    return Call(body, {"Content-Type": "application/json", **uni.sign(body, secret, timestamp=ts)})


SIGNERS: dict[str, Callable[..., Call]] = {
    "generic_rest": generic_rest_call,
    "tripletex": tripletex_call,
    "visma_net": visma_call,
    "uni_economy": uni_call,
}


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass
class Listener:
    url: str
    app: App
    metrics: Metrics
    http: aiohttp.ClientSession
    tokens: dict[str, str] = field(default_factory=dict)  # client → URL token
    secrets: dict[str, str] = field(default_factory=dict)  # client → webhook secret

    def call(self, client: str, **kwargs: Any) -> Call:
        return SIGNERS[CLIENTS[client]](self.secrets[client], **kwargs)

    async def post(self, path: str, call: Call | None = None, **kwargs: Any) -> Answer:
        if call is not None:
            kwargs.setdefault("data", call.body)
            kwargs.setdefault("headers", call.headers)
        async with self.http.post(self.url + path, **kwargs) as resp:
            try:
                body = await resp.json(content_type=None)
            except ValueError:
                body = {}
            return Answer(resp.status, body or {}, dict(resp.headers))

    async def deliver(self, client: str, call: Call) -> Answer:
        return await self.post(f"/webhooks/{CLIENTS[client]}/{self.tokens[client]}", call)

    async def published(self) -> list[dict[str, Any]]:
        """Every envelope on the bus (taken off it)."""
        out = []
        while got := await self.app.bus.receive(100, 0.05):
            for delivery in got:
                out.append(json.loads(delivery.body))
                await self.app.bus.complete(delivery)
        return out

    async def get(self, path: str) -> tuple[int, str]:
        async with self.http.get(self.url + path) as resp:
            return resp.status, await resp.text()


def provision(app: App) -> tuple[dict[str, str], dict[str, str]]:
    box = SecretBox(SECRET_KEY)
    tokens, secrets = {}, {}
    with app.db.engine.begin() as db:
        for client, kind in CLIENTS.items():
            secrets[client] = WEBHOOK_SECRETS[kind]()
            clients.add_client(db, client, client)
            creds = box.encrypt({"token": "t", "webhook_secret": secrets[client]})
            clients.set_connection(
                db, clients.StoredConnection(client, kind, "http://erp.invalid", {}, creds, True)
            )
            tokens[client] = webhooks.create_endpoint(db, client, kind)
    return tokens, secrets


@asynccontextmanager
async def listener(
    db_url: str, *, rate_per_s: float = 1000, burst: int = 1000, **settings: Any
) -> AsyncIterator[Listener]:
    s = load_settings(database_url=db_url, secret_key=SECRET_KEY, lock_duration_s=5, **settings)
    metrics = Metrics()
    async with open_app(s) as app:
        tokens, secrets = provision(app)
        asgi = create_app(app, metrics, limiter=RateLimiter(rate_per_s, burst))
        async with serving(asgi) as url, aiohttp.ClientSession() as http:
            yield Listener(url, app, metrics, http, tokens, secrets)
