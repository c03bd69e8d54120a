"""What the Uni Economy provider's test modules share (``test_uni_economy_provider*.py``): the
registered client's key and certificate, the fake served on 127.0.0.1, the provider built against
it, the contract's harness, and the records (``http`` and ``change`` come from ``provider_contract``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from decimal import Decimal

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from contracts import Address, Customer, Entity, Invoice, InvoiceLine, Project, Supplier
from providers.base import ConnectionSpec, PushResult
from providers.uni_economy import UniEconomyProvider
from providers.uni_economy import mapping as m
from providers.uni_economy.webhooks import parse_webhook
from tests.fakes.uni_economy import FakeUni
from tests.fakes.uni_keys import certificate, pem, uni_connection, uni_key
from tests.integration.provider_contract import FakeHarness

CLIENT_ID = "cw-integration"
ALL_VIOLATIONS: list[str] = []
"""Every spec violation these modules' fakes saw (the spec test at the end checks)."""


ADDRESS = Address(street="Storgata 1", postal_code="0155", city="Oslo", country="NO")
CUSTOMER = Customer(
    id="c-1", number="1001", name="Acme AS", org_number="999888777", email="post@acme.no", address=ADDRESS
)
SUPPLIER = Supplier(id="s-1", number="2001", name="Rør og Rør AS", email="faktura@ror.no")
PROJECT = Project(
    id="p-1", number="P-17", name="Kontorbygg", customer_id="c-1", start_date=dt.date(2024, 3, 1)
)


def invoice(cw_id: str = "i-1", *lines: InvoiceLine, currency: str = "NOK") -> Invoice:
    default = InvoiceLine(
        description="Rørlegging", quantity=Decimal("2"), unit_price=Decimal("950.50"), vat_rate=Decimal(25)
    )
    return Invoice(
        id=cw_id,
        number=f"INV-{cw_id}",
        customer_id="c-1",
        customer_number="1001",
        invoice_date=dt.date(2024, 5, 2),
        due_date=dt.date(2024, 5, 16),
        currency=currency,
        lines=list(lines) or [default],
        reference="Ola Nordmann",
    )


@pytest.fixture(scope="session")
def key() -> rsa.RSAPrivateKey:
    return uni_key("provider tests")


@pytest.fixture(scope="session")
def cert(key: rsa.RSAPrivateKey) -> x509.Certificate:
    return certificate(key, CLIENT_ID)


@pytest.fixture
async def fake(key: rsa.RSAPrivateKey, cert: x509.Certificate) -> AsyncIterator[FakeUni]:
    uni = FakeUni()
    uni.register_client(CLIENT_ID, key.public_key(), cert)
    async with uni.serve():
        yield uni
    ALL_VIOLATIONS.extend(uni.violations)


MakeProvider = Callable[..., UniEconomyProvider]


@pytest.fixture
def make(
    fake: FakeUni, http: aiohttp.ClientSession, key: rsa.RSAPrivateKey, cert: x509.Certificate
) -> MakeProvider:
    def build(
        settings: dict[str, str] | None = None, credentials: dict[str, str] | None = None
    ) -> UniEconomyProvider:
        base_settings, creds = uni_connection(fake, CLIENT_ID, key, cert)
        spec = ConnectionSpec(
            "acme",
            "uni_economy",
            fake.base_url,
            {**base_settings, **(settings or {})},
            {**creds, **(credentials or {})},
        )
        return UniEconomyProvider(spec, http)

    return build


@pytest.fixture
def provider(make: MakeProvider) -> UniEconomyProvider:
    return make()


class UniHarness(FakeHarness):
    kind = "uni_economy"
    required_credential = "client_id"

    def __init__(self, fake: FakeUni, make: MakeProvider, secrets: list[str]) -> None:
        self.fake, self.make_provider, self._secrets = fake, make, secrets
        self.customer, self.supplier, self.invoice = CUSTOMER, SUPPLIER, invoice()

    def make(
        self, settings: dict[str, str] | None = None, credentials: dict[str, str] | None = None
    ) -> UniEconomyProvider:
        return self.make_provider(settings, credentials)

    async def count(self, entity: Entity) -> int:
        return len(self.fake.entities(m.KINDS[entity].collection))

    async def fail_next_429(self, retry_after: int) -> None:
        self.fake.fail_next(1, 429, retry_after=str(retry_after))

    def writes(self) -> list[str]:
        return [f"{method} {path}" for method, path in self.fake.requests if method != "GET"]

    def secrets(self) -> list[str]:
        return self._secrets

    def listen(self) -> None:
        self.fake.add_event_plan("http://127.0.0.1:9/nobody-listens", self.hook_secret)

    async def our_webhook_author(self, provider: UniEconomyProvider, pushed: PushResult) -> str | None:
        return await self.delivered_author(parse_webhook, pushed)


@pytest.fixture
def erp(fake: FakeUni, make: MakeProvider, key: rsa.RSAPrivateKey) -> UniHarness:
    return UniHarness(fake, make, [pem(key).splitlines()[1], fake.company_key])
