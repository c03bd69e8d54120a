"""What the generic REST provider's test modules share (``test_generic_rest.py``,
``test_generic_rest_sandbox.py``): the records, the real sandbox ERP on 127.0.0.1, a client
session whose requests are traced as sent (``Wire``), the contract's harness, and calls to the
sandbox's control API and to its interface directly."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from contracts import Action, Address, Customer, CWRecord, Entity, Invoice, InvoiceLine, Project, Supplier
from providers.base import ConnectionSpec, OutboundChange, PushResult
from providers.generic_rest import GenericRestProvider
from providers.generic_rest.sandbox import SandboxServer
from tests.integration.provider_contract import Harness

TOKEN = "sandbox-token-123"
CUSTOMER = Customer(
    id="c-1",
    number="1001",
    name="Acme AS",
    org_number="923609016",
    address=Address(street="Storgata 1", postal_code="0155", city="Oslo", country="NO"),
)
SUPPLIER = Supplier(id="s-1", number="2001", name="Bolt AS", email="post@bolt.no")
PROJECT = Project(id="p-1", number="P-7", name="Roof", customer_id="c-1", start_date=dt.date(2025, 3, 1))
INVOICE = Invoice(
    id="i-1",
    number="10001",
    customer_id="c-1",
    customer_number="1001",
    invoice_date=dt.date(2025, 3, 31),
    due_date=dt.date(2025, 4, 14),
    currency="NOK",
    lines=[
        InvoiceLine(
            description="Labour", quantity=Decimal("7.5"), unit_price=Decimal("950.00"), vat_rate=Decimal(25)
        ),
        InvoiceLine(
            description="Nails", quantity=Decimal(1), unit_price=Decimal("0.10"), vat_rate=Decimal(0)
        ),
    ],
    project_id="p-1",
)


@dataclass
class SentRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""
    at: float = field(default_factory=time.monotonic)


@dataclass
class Wire:
    """Every request the provider's session put on the wire, as sent."""

    sent: list[SentRequest] = field(default_factory=list)

    def trace(self) -> aiohttp.TraceConfig:
        config = aiohttp.TraceConfig()

        async def start(_: Any, ctx: SimpleNamespace, params: aiohttp.TraceRequestStartParams) -> None:
            ctx.request = SentRequest(params.method, params.url.raw_path, dict(params.headers))
            self.sent.append(ctx.request)

        async def chunk(_: Any, ctx: SimpleNamespace, params: aiohttp.TraceRequestChunkSentParams) -> None:
            ctx.request.body += params.chunk

        config.on_request_start.append(start)
        config.on_request_chunk_sent.append(chunk)
        return config


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxServer]:
    async with SandboxServer(token=TOKEN) as server:
        yield server


@pytest.fixture
def wire() -> Wire:
    return Wire()


@pytest.fixture
async def http(wire: Wire) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(trace_configs=[wire.trace()]) as session:
        yield session


ProviderFactory = Callable[..., GenericRestProvider]


@pytest.fixture
def make_provider(sandbox: SandboxServer, http: aiohttp.ClientSession) -> ProviderFactory:
    def make(
        *, token: str | None = TOKEN, base_url: str | None = None, **settings: str
    ) -> GenericRestProvider:
        spec = ConnectionSpec(
            client_id="acme",
            kind="generic_rest",
            base_url=base_url or sandbox.base_url,
            settings=settings,
            credentials={} if token is None else {"token": token},
        )
        return GenericRestProvider(spec, http)

    return make


class GenericRestHarness(Harness):
    kind = "generic_rest"
    required_credential = "token"
    has_tokens = has_vat_codes = looks_up_parents = reads_records = False
    customer, supplier, invoice = CUSTOMER, SUPPLIER, INVOICE

    def __init__(self, sandbox: SandboxServer, http: aiohttp.ClientSession, wire: Wire) -> None:
        self.sandbox, self.http, self.wire = sandbox, http, wire

    def make(
        self, settings: dict[str, str] | None = None, credentials: dict[str, str] | None = None
    ) -> GenericRestProvider:
        creds = {"token": TOKEN, **(credentials or {})}
        spec = ConnectionSpec("acme", "generic_rest", self.sandbox.base_url, settings or {}, creds)
        return GenericRestProvider(spec, self.http)

    async def count(self, entity: Entity) -> int:
        records = await control(self.http, self.sandbox, "GET", "records")
        return sum(1 for r in records if r["entity"] == entity.value and not r["deleted"])

    async def fail_next_429(self, retry_after: int) -> None:
        await control(self.http, self.sandbox, "POST", "fail-next", status=429, retry_after=retry_after)

    def sent(self) -> list[float]:
        return [r.at for r in self.wire.sent if "/_sandbox/" not in r.path]

    def writes(self) -> list[str]:
        return [
            f"{r.method} {r.path}" for r in self.wire.sent if r.method != "GET" and "/_sandbox/" not in r.path
        ]

    def secrets(self) -> list[str]:
        return [TOKEN]

    async def our_webhook_author(self, provider: GenericRestProvider, pushed: PushResult) -> str | None:
        raise NotImplementedError("the generic REST identity is discovered by GET {base}/v1/_ping")


@pytest.fixture
def erp(sandbox: SandboxServer, http: aiohttp.ClientSession, wire: Wire) -> GenericRestHarness:
    return GenericRestHarness(sandbox, http, wire)


def change(record: CWRecord, action: Action = Action.created, *, key: str = "env-1") -> OutboundChange:
    entity = Entity(type(record).__name__.lower())
    body = None if action is Action.deleted else record
    return OutboundChange(idempotency_key=key, entity=entity, action=action, cw_id=record.id, record=body)


async def control(
    http: aiohttp.ClientSession, sandbox: SandboxServer, method: str, path: str, **body: Any
) -> Any:
    async with http.request(method, f"{sandbox.base_url}/_sandbox/{path}", json=body or None) as resp:
        assert resp.status < 300, await resp.text()
        return await resp.json() if resp.status != 204 else None


async def raw(
    http: aiohttp.ClientSession,
    sandbox: SandboxServer,
    method: str,
    path: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    sent = {"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": "k-1"} if headers is None else headers
    async with http.request(method, sandbox.base_url + path, json=body, headers=sent) as resp:
        return resp.status, (await resp.json() if resp.content_length else None)
