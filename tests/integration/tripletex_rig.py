"""What the Tripletex provider's test modules share (``test_tripletex_provider*.py``): the records,
the connection's settings and credentials, the fake served over real HTTP on 127.0.0.1, the
contract's harness around it, and the ``fake``, ``erp`` and ``make`` fixtures (``http`` comes from
``provider_contract``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from decimal import Decimal

import aiohttp
import pytest

from contracts import Address, Customer, Entity, Invoice, InvoiceLine, Project, Supplier
from providers.base import ConnectionSpec, PushResult
from providers.tripletex import TripletexProvider
from providers.tripletex.webhooks import parse_webhook
from tests.fakes import serve_app
from tests.fakes.tripletex import CONSUMER_TOKEN, EMPLOYEE_TOKEN, FakeTripletex
from tests.integration.provider_contract import FakeHarness, change

SETTINGS = {"vat_code.25": "3", "vat_code.0": "6", "project_manager_id": "11"}
CREDENTIALS = {"consumer_token": CONSUMER_TOKEN, "employee_token": EMPLOYEE_TOKEN}
OSLO = Address(street="Storgata 1", postal_code="0150", city="Oslo", country="NO")
CUSTOMER = Customer(
    id="c-1", number="1001", name="Acme AS", org_number="999888777", email="a@acme.no", address=OSLO
)
SUPPLIER = Supplier(id="s-1", number="501", name="Bygg AB", address=OSLO.model_copy(update={"country": "SE"}))
PROJECT = Project(
    id="p-1", number="P-77", name="New roof", customer_id="1001", start_date=dt.date(2024, 5, 1)
)
LINES = [
    InvoiceLine(
        description="Roofing", quantity=Decimal("7.5"), unit_price=Decimal("950"), vat_rate=Decimal("25.00")
    ),
    InvoiceLine(
        description="Permit fee", quantity=Decimal("1"), unit_price=Decimal("400"), vat_rate=Decimal("0")
    ),
]
INVOICE = Invoice(
    id="i-1",
    number="20001",
    customer_id="c-1",
    customer_number="1001",
    invoice_date=dt.date(2024, 5, 2),
    due_date=dt.date(2024, 5, 16),
    currency="NOK",
    lines=LINES,
    reference="PO 55",
)
ALL_FAKES: list[FakeTripletex] = []
"""Every fake these modules served (the last test checks that none saw a request against the spec)."""

Make = Callable[..., TripletexProvider]


@pytest.fixture
async def fake() -> AsyncIterator[FakeTripletex]:
    erp = FakeTripletex()
    ALL_FAKES.append(erp)
    async with serve_app(erp.app()) as url:
        erp.base_url = f"{url}/v2"
        yield erp
    assert erp.violations == []


class TripletexHarness(FakeHarness):
    kind = "tripletex"
    required_credential = "employee_token"
    customer, supplier, invoice = CUSTOMER, SUPPLIER, INVOICE
    fake: FakeTripletex

    def __init__(self, fake: FakeTripletex, http: aiohttp.ClientSession) -> None:
        self.fake, self.http = fake, http

    def make(
        self, settings: dict[str, str] | None = None, credentials: dict[str, str] | None = None
    ) -> TripletexProvider:
        spec = ConnectionSpec(
            client_id="acme",
            kind="tripletex",
            base_url=self.fake.base_url,
            settings={**SETTINGS, **(settings or {})},
            credentials={**CREDENTIALS, **(credentials or {})},
        )
        return TripletexProvider(spec, self.http)

    async def count(self, entity: Entity) -> int:
        # An invoice is an order first: none may be written when the invoice cannot be.
        return self.fake.writes["order"] if entity is Entity.invoice else len(self.fake.objects(entity.value))

    async def fail_next_429(self, retry_after: int) -> None:
        self.fake.fail_next(1, 429, reset=retry_after)

    def writes(self) -> list[str]:
        return [r for r in self.fake.requests if not r.startswith("GET") and "/token/" not in r]

    def secrets(self) -> list[str]:
        return [CONSUMER_TOKEN, EMPLOYEE_TOKEN]

    def token_requests(self) -> int:
        return self.fake.sessions_created

    async def our_webhook_author(self, provider: TripletexProvider, pushed: PushResult) -> str | None:
        headers, body = self.fake.callback("customer.create", "customer", int(str(pushed.external_id)), "s3")
        [inbound] = parse_webhook(headers, body, secret="s3")
        return inbound.author


@pytest.fixture
def erp(fake: FakeTripletex, http: aiohttp.ClientSession) -> TripletexHarness:
    return TripletexHarness(fake, http)


@pytest.fixture
def make(erp: TripletexHarness) -> Make:
    def build(
        settings: dict[str, str] | None = None, credentials: dict[str, str] | None = None
    ) -> TripletexProvider:
        if credentials is not None:  # these tests give the whole set
            credentials = {name: credentials.get(name, "") for name in CREDENTIALS}
        return erp.make(settings, credentials)

    return build


async def with_customer(provider: TripletexProvider) -> None:
    await provider.push(change(CUSTOMER))
