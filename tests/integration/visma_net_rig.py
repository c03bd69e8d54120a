"""What the Visma.net provider's test modules share (``test_visma_net_provider*.py``): the fake
served over real HTTP on 127.0.0.1 (token endpoint included), the connection to it, the records,
and the contract's harness (``http`` and ``change`` come from ``provider_contract``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from decimal import Decimal

import aiohttp
import pytest

from contracts import Action, Address, Customer, Entity, Invoice, InvoiceLine, Supplier
from providers.base import ConnectionSpec, OutboundChange, PushResult
from providers.visma_net.provider import VismaNetProvider
from providers.visma_net.webhooks import parse_webhook
from tests.fakes import serve_app
from tests.fakes.visma_net import FakeVismaNet
from tests.integration.provider_contract import FakeHarness

# Every request any test's fake saw, and every spec violation among them (checked by the last test).
SEEN: dict[str, list[str]] = {"requests": [], "violations": []}


@pytest.fixture
async def fake() -> AsyncIterator[FakeVismaNet]:
    erp = FakeVismaNet()
    async with serve_app(erp.app()) as url:
        erp.base_url = url
        yield erp
    SEEN["requests"] += [f"{method} {path}" for method, path in erp.requests]
    SEEN["violations"] += erp.violations


def connection(
    erp: FakeVismaNet, secret: str | None = None, credentials: dict[str, str] | None = None, **settings: str
) -> ConnectionSpec:
    base = {
        "tenant_id": erp.tenant_id,
        "token_url": f"{erp.base_url}/connect/token",
        "revenue_account": "3000",
        "vat_code.25": "3",
        "vat_code.0": "5",
        "project_template": "STANDARD",
    }
    return ConnectionSpec(
        client_id="acme",
        kind="visma_net",
        base_url=erp.base_url,
        settings={**base, **settings},
        credentials={
            "client_id": erp.client_id,
            "client_secret": secret or erp.client_secret,
            **(credentials or {}),
        },
    )


def provider(erp: FakeVismaNet, http: aiohttp.ClientSession, **settings: str) -> VismaNetProvider:
    return VismaNetProvider(connection(erp, credentials=None, **settings), http)


def customer(number: str = "10001", name: str = "Acme AS") -> Customer:
    address = Address(street="Storgata 1", postal_code="0155", city="Oslo", country="NO")
    return Customer(
        id=f"cw-{number}",
        number=number,
        name=name,
        org_number="999888777",
        email="post@acme.no",
        address=address,
    )


def invoice(cw_id: str = "inv-1", customer_number: str = "10001", vat: str = "25") -> Invoice:
    line = InvoiceLine(
        description="Groundwork", quantity=Decimal("2"), unit_price=Decimal("1500.00"), vat_rate=Decimal(vat)
    )
    return Invoice(
        id=cw_id,
        number="2024-17",
        customer_id="cw-10001",
        customer_number=customer_number,
        invoice_date=dt.date(2024, 5, 1),
        due_date=dt.date(2024, 5, 15),
        currency="NOK",
        lines=[line],
        reference="PO 77",
    )


def deletion(entity: Entity, cw_id: str, known: str | None = None) -> OutboundChange:
    return OutboundChange(f"del-{cw_id}", entity, Action.deleted, cw_id, None, known)


class VismaHarness(FakeHarness):
    kind = "visma_net"
    required_credential = "client_secret"
    customer = customer()
    supplier = Supplier(id="s-1", number="20001", name="Betong AS", email="post@betong.no")
    invoice = invoice()

    def __init__(self, fake: FakeVismaNet, http: aiohttp.ClientSession) -> None:
        self.fake, self.http = fake, http

    def make(
        self, settings: dict[str, str] | None = None, credentials: dict[str, str] | None = None
    ) -> VismaNetProvider:
        return VismaNetProvider(connection(self.fake, credentials=credentials, **(settings or {})), self.http)

    async def count(self, entity: Entity) -> int:
        if entity is Entity.invoice:
            return len(self.fake.invoices)
        return len(self.fake.stores[entity.value].records)

    async def fail_next_429(self, retry_after: int) -> None:
        self.fake.fail_next(1, 429, retry_after=str(retry_after))

    def writes(self) -> list[str]:
        return [f"{method} {path}" for method, path in self.fake.requests if method != "GET"]

    def secrets(self) -> list[str]:
        return [self.fake.client_secret]

    def listen(self) -> None:
        self.fake.configure_webhook("http://127.0.0.1:9/nobody-listens", self.hook_secret)

    async def our_webhook_author(self, provider: VismaNetProvider, pushed: PushResult) -> str | None:
        return await self.delivered_author(parse_webhook, pushed)


@pytest.fixture
def erp(fake: FakeVismaNet, http: aiohttp.ClientSession) -> VismaHarness:
    return VismaHarness(fake, http)
