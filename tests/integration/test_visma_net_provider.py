"""The Visma.net provider against the stateful fake over real HTTP (token endpoint included): the
shared provider contract (``TestVismaNetContract``), then what only Visma.net does."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from contracts import Action, Address, Customer, CWRecord, Entity, Invoice, InvoiceLine, Project, Supplier
from providers.base import ConnectionSpec, OutboundChange, PushResult, content_hash
from providers.errors import (
    AuthenticationFailed,
    DependencyMissing,
    MappingError,
    NotSupported,
    ProviderRejected,
    TransientError,
)
from providers.settings import SettingsReader
from providers.visma_net import mapping
from providers.visma_net.provider import VismaNetProvider
from providers.visma_net.webhooks import parse_webhook
from tests.fakes import serve_app
from tests.fakes.visma_net import API_SUBJECT, SPEC_NAME, FakeVismaNet
from tests.integration.provider_contract import FakeHarness, ProviderContract
from tests.openapi import load_spec

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


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


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
    return VismaNetProvider(connection(erp, **settings), http)


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


def change(
    record: CWRecord, action: Action = Action.created, known: str | None = None, **kw: Any
) -> OutboundChange:
    entity = Entity(type(record).__name__.lower())
    return OutboundChange(f"key-{record.id}", entity, action, record.id, record, known, **kw)


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


class TestVismaNetContract(ProviderContract):
    pass


# customers, suppliers, projects


async def test_create_customer(fake: FakeVismaNet, http: aiohttp.ClientSession) -> None:
    result = await provider(fake, http).push(change(customer()))

    assert (result.outcome, result.external_id, result.author) == ("created", "10001", None)
    settings = SettingsReader.of(connection(fake))
    assert result.content_hash == content_hash(mapping.customer_body(customer(), settings))
    stored = fake.customers["10001"]
    assert (stored["name"], stored["corporateId"], stored["mainAddress"]["city"]) == (
        "Acme AS",
        "999888777",
        "Oslo",
    )


async def test_update_known_customer(fake: FakeVismaNet, http: aiohttp.ClientSession) -> None:
    erp = provider(fake, http)
    await erp.push(change(customer()))

    result = await erp.push(change(customer(name="Acme Holding AS"), Action.updated, known="10001"))

    assert (result.outcome, result.external_id) == ("updated", "10001")
    assert fake.customers["10001"]["name"] == "Acme Holding AS"
    assert len(fake.customers) == 1


async def test_known_id_gone_falls_back_to_lookup(fake: FakeVismaNet, http: aiohttp.ClientSession) -> None:
    result = await provider(fake, http).push(change(customer(), Action.updated, known="OLD-1"))

    assert (result.outcome, result.external_id) == ("created", "10001")
    assert list(fake.customers) == ["10001"]


async def test_supplier_version_is_its_last_modified_time(
    fake: FakeVismaNet, http: aiohttp.ClientSession
) -> None:
    supplier = Supplier(id="s-1", number="20001", name="Betong AS", email="post@betong.no")
    erp = provider(fake, http)
    created = await erp.push(change(supplier))
    updated = await erp.push(change(supplier, Action.updated, known="20001"))

    assert (created.outcome, updated.outcome) == ("created", "updated")
    assert created.version and updated.version and created.version != updated.version
    assert updated.version == fake.stores["supplier"].records["20001"]["lastModifiedDateTime"]
    assert fake.stores["supplier"].records["20001"]["mainContact"]["email"] == "post@betong.no"


async def test_project_created_and_updated(fake: FakeVismaNet, http: aiohttp.ClientSession) -> None:
    project = Project(
        id="p-1", number="PRJ-9", name="New school", customer_id="cw-10001", start_date=dt.date(2024, 3, 1)
    )
    erp = provider(fake, http)
    created = await erp.push(change(project))
    updated = await erp.push(change(project.model_copy(update={"name": "New school, phase 2"})))

    assert (created.outcome, created.external_id, updated.outcome) == ("created", "PRJ-9", "updated")
    stored = fake.stores["project"].records["PRJ-9"]
    assert (stored["description"], stored["template"]) == ("New school, phase 2", "STANDARD")


@pytest.mark.parametrize("entity", [Entity.customer, Entity.supplier, Entity.project])
async def test_master_data_cannot_be_deleted(
    fake: FakeVismaNet, http: aiohttp.ClientSession, entity: Entity
) -> None:
    with pytest.raises(NotSupported, match="inactive"):
        await provider(fake, http).push(deletion(entity, "x-1", known="10001"))
    assert fake.requests == []


# errors, limits, auth


async def test_429_retry_after_beyond_the_wait_is_handed_to_the_retry(
    fake: FakeVismaNet, http: aiohttp.ClientSession
) -> None:
    erp = provider(fake, http)
    fake.fail_next(1, 429, retry_after="7")
    with pytest.raises(TransientError) as caught:
        await erp.push(change(customer()))
    assert caught.value.retry_after == 7

    sent = len(fake.requests)
    with pytest.raises(TransientError, match="rate limit used up"):
        await erp.push(change(customer()))
    assert len(fake.requests) == sent


async def test_429_without_retry_after_uses_the_reset_header(
    fake: FakeVismaNet, http: aiohttp.ClientSession
) -> None:
    fake.fail_next(1, 429)
    with pytest.raises(TransientError) as caught:
        await provider(fake, http).push(change(customer()))
    assert caught.value.retry_after == 30


async def test_503_is_transient(fake: FakeVismaNet, http: aiohttp.ClientSession) -> None:
    fake.fail_next(1, 503, message="Service is under maintenance")
    with pytest.raises(TransientError, match="under maintenance"):
        await provider(fake, http).push(change(customer()))


async def test_token_is_cached(fake: FakeVismaNet, http: aiohttp.ClientSession) -> None:
    erp = provider(fake, http)
    await erp.push(change(customer("10001")))
    await erp.push(change(customer("10002")))
    assert fake.token_requests == 1


async def test_revoked_credentials_fail_authentication(
    fake: FakeVismaNet, http: aiohttp.ClientSession
) -> None:
    erp = provider(fake, http)
    await erp.push(change(customer()))
    fake.revoke_credentials()

    with pytest.raises(AuthenticationFailed, match="invalid_client") as caught:
        await erp.push(change(customer(), Action.updated, known="10001"))
    assert "cwi connections set acme visma_net --credential client_secret=" in str(caught.value)


async def test_403_names_the_scopes(fake: FakeVismaNet, http: aiohttp.ClientSession) -> None:
    fake.fail_next(1, 403, message="Insufficient scope")
    with pytest.raises(AuthenticationFailed, match=r"Insufficient scope.*check setting scopes"):
        await provider(fake, http).push(change(customer()))


async def test_vendor_validation_error_carries_visma_message(
    fake: FakeVismaNet, http: aiohttp.ClientSession
) -> None:
    fake.seed_customer("10001")
    with pytest.raises(ProviderRejected, match="VAT code '99' was not found") as caught:
        await provider(fake, http, **{"vat_code.25": "99"}).push(change(invoice()))
    assert "message id 400_" in str(caught.value)


async def test_invoice_or_project_whose_customer_is_missing_waits(
    fake: FakeVismaNet, http: aiohttp.ClientSession
) -> None:
    erp = provider(fake, http)
    with pytest.raises(DependencyMissing, match=r"customer 99999 is not in Visma\.net yet"):
        await erp.push(change(invoice(customer_number="99999")))
    project = Project(
        id="p-9",
        number="P9",
        name="X",
        customer_id="c",
        customer_number="99999",
        start_date=dt.date(2024, 1, 1),
    )
    with pytest.raises(DependencyMissing, match="customer 99999"):
        await erp.push(change(project))
    assert fake.invoices == {} and fake.stores["project"].records == {}


async def test_identity_is_the_subject_of_our_token(fake: FakeVismaNet, http: aiohttp.ClientSession) -> None:
    assert await provider(fake, http).identity() == API_SUBJECT


async def test_injected_422_is_rejected_with_its_message(
    fake: FakeVismaNet, http: aiohttp.ClientSession
) -> None:
    fake.fail_next(1, 422, message="Field 'name' is too long")
    with pytest.raises(ProviderRejected, match="HTTP 422: Field 'name' is too long"):
        await provider(fake, http).push(change(customer()))


async def test_vat_rates_compare_as_numbers(fake: FakeVismaNet) -> None:
    settings = SettingsReader.of(connection(fake, **{"vat_code.25.00": "3"}))
    assert settings.vat_code(Decimal("25")) == "3"
    assert settings.vat_code(Decimal("0.0")) == "5"


async def test_check_ok_and_with_bad_credentials(fake: FakeVismaNet, http: aiohttp.ClientSession) -> None:
    summary = await provider(fake, http).check()
    assert summary == (
        f"visma_net at {fake.base_url}: authenticated as API client cw-integration for tenant tenant-42; "
        f"changes we make carry author {API_SUBJECT}"
    )

    with pytest.raises(AuthenticationFailed, match="Check credentials client_id and client_secret"):
        await VismaNetProvider(connection(fake, secret="wrong"), http).check()


async def test_preview_shows_the_invoice_steps(fake: FakeVismaNet, http: aiohttp.ClientSession) -> None:
    requests = provider(fake, http, release_invoices="true").preview(change(invoice()))

    assert [(r.method, r.url.removeprefix(fake.base_url)) for r in requests] == [
        ("POST", "/v2/customerinvoice"),
        ("POST", "/v1/customerinvoice/<number of the new invoice>/action/release"),
    ]
    assert requests[0].json["externalReference"] == {"value": "inv-1"}
    assert fake.token_requests == 0


# invoices


async def test_invoice_created_as_draft(fake: FakeVismaNet, http: aiohttp.ClientSession) -> None:
    fake.seed_customer("10001")
    result = await provider(fake, http).push(change(invoice()))

    stored = fake.invoices[result.external_id or ""]
    assert (result.outcome, stored["status"], stored["externalReference"]) == ("created", "Balanced", "inv-1")
    assert stored["invoiceLines"][0]["vatCodeId"] == "3"
    assert stored["invoiceLines"][0]["accountNumber"] == "3000"


async def test_invoice_released_and_sent(fake: FakeVismaNet, http: aiohttp.ClientSession) -> None:
    fake.seed_customer("10001")
    erp = provider(fake, http, release_invoices="true", send_invoices="true")
    result = await erp.push(change(invoice()))

    number = result.external_id or ""
    assert fake.invoices[number]["status"] == "Open"
    assert fake.sent_invoices == {number}


async def test_send_without_release_is_a_mapping_error(
    fake: FakeVismaNet, http: aiohttp.ClientSession
) -> None:
    with pytest.raises(MappingError, match="release_invoices=true"):
        await provider(fake, http, send_invoices="true").push(change(invoice()))


async def test_failed_release_is_rejected(fake: FakeVismaNet, http: aiohttp.ClientSession) -> None:
    fake.seed_customer("10001")
    fake.release_error = "Financial period 2024-05 is closed"
    with pytest.raises(ProviderRejected, match="period 2024-05 is closed"):
        await provider(fake, http, release_invoices="true").push(change(invoice()))


async def test_recovering_invoice_push_does_not_duplicate(
    fake: FakeVismaNet, http: aiohttp.ClientSession
) -> None:
    fake.seed_customer("10001")
    erp = provider(fake, http, release_invoices="true")
    first = await erp.push(change(invoice()))

    again = await erp.push(change(invoice(), recovering=True))

    assert (again.outcome, again.external_id) == ("unchanged", first.external_id)
    assert len(fake.invoices) == 1


async def test_redelivered_draft_invoice_is_updated_not_duplicated(
    fake: FakeVismaNet, http: aiohttp.ClientSession
) -> None:
    fake.seed_customer("10001")
    erp = provider(fake, http)
    first = await erp.push(change(invoice()))
    again = await erp.push(change(invoice()))

    assert (again.outcome, again.external_id) == ("updated", first.external_id)
    assert len(fake.invoices) == 1
    assert len(fake.invoices[first.external_id or ""]["invoiceLines"]) == 1


async def test_draft_invoice_update_replaces_lines(fake: FakeVismaNet, http: aiohttp.ClientSession) -> None:
    fake.seed_customer("10001")
    erp = provider(fake, http)
    first = await erp.push(change(invoice()))
    extra = InvoiceLine(
        description="Gravel", quantity=Decimal("3"), unit_price=Decimal("99.5"), vat_rate=Decimal("0")
    )
    changed = invoice().model_copy(update={"lines": [*invoice().lines, extra]})

    result = await erp.push(change(changed, Action.updated, known=first.external_id))

    lines = fake.invoices[first.external_id or ""]["invoiceLines"]
    assert result.outcome == "updated"
    assert [(line["description"], line["vatCodeId"]) for line in lines] == [
        ("Groundwork", "3"),
        ("Gravel", "5"),
    ]


async def test_released_invoice_cannot_be_updated(fake: FakeVismaNet, http: aiohttp.ClientSession) -> None:
    fake.seed_customer("10001")
    erp = provider(fake, http, release_invoices="true")
    first = await erp.push(change(invoice()))
    with pytest.raises(NotSupported, match="credit note"):
        await erp.push(change(invoice(), Action.updated, known=first.external_id))


async def test_draft_invoice_deleted(fake: FakeVismaNet, http: aiohttp.ClientSession) -> None:
    fake.seed_customer("10001")
    erp = provider(fake, http)
    first = await erp.push(change(invoice()))

    result = await erp.push(deletion(Entity.invoice, "inv-1"))

    assert (result.outcome, result.external_id) == ("deleted", first.external_id)
    assert fake.invoices == {}
    assert (await erp.push(deletion(Entity.invoice, "inv-1", first.external_id))).outcome == "unchanged"


async def test_released_invoice_cannot_be_deleted(fake: FakeVismaNet, http: aiohttp.ClientSession) -> None:
    fake.seed_customer("10001")
    erp = provider(fake, http, release_invoices="true")
    first = await erp.push(change(invoice()))
    with pytest.raises(NotSupported, match="only unreleased invoices"):
        await erp.push(deletion(Entity.invoice, "inv-1", first.external_id))
    assert first.external_id in fake.invoices


# the spec as oracle


async def test_fake_rejects_and_records_a_body_outside_the_spec(
    fake: FakeVismaNet, http: aiohttp.ClientSession
) -> None:
    erp = provider(fake, http)
    with pytest.raises(ProviderRejected, match=r"HTTP 400: PUT /v1/customer/\{customerCd\} body violates"):
        await erp.client.request("PUT", "/v1/customer/10001", body={"name": "not wrapped"})
    with pytest.raises(ProviderRejected, match="not in the spec"):
        await erp.client.request("POST", "/v1/customer", body={"nmae": {"value": "Typo AS"}})
    assert len(fake.violations) == 2
    assert "name: 'not wrapped' is not of type 'object'" in fake.violations[0]
    assert fake.violations[1].endswith("(Visma ignores them): nmae")
    fake.violations.clear()  # deliberate; keep the module-wide check for the provider's own requests


def test_every_mapped_body_validates_against_the_spec() -> None:
    spec = load_spec(SPEC_NAME)
    settings = {
        "revenue_account": "3000",
        "vat_code.25": "3",
        "project_subaccount": "1:100,2:20",
        "branch_number": "1",
    }
    conn = SettingsReader("acme", "visma_net", settings)
    supplier = Supplier(
        id="s-1", number="20001", name="Betong AS", org_number="911", address=customer().address
    )
    project = Project(
        id="p-1",
        number="P1",
        name="School",
        customer_id="c",
        start_date=dt.date(2024, 1, 1),
        end_date=dt.date(2024, 9, 1),
    )
    bodies = [
        ("POST", "/v1/customer", {**mapping.customer_body(customer(), conn), **mapping.CREATE_EXTRAS}),
        ("PUT", "/v1/customer/{customerCd}", mapping.customer_body(customer(), conn)),
        ("POST", "/v1/supplier", {**mapping.supplier_body(supplier, conn), **mapping.CREATE_EXTRAS}),
        ("PUT", "/v1/supplier/{supplierCd}", mapping.supplier_body(supplier, conn)),
        ("POST", "/v1/project", mapping.project_body(project, conn)),
        ("PUT", "/v1/project/{projectId}", mapping.project_body(project, conn)),
        ("POST", "/v2/customerinvoice", mapping.invoice_body(invoice(), conn)),
        ("PUT", "/v1/customerinvoice/{invoiceNumber}", mapping.invoice_update_body(invoice(), conn, [1, 2])),
    ]
    for method, path, body in bodies:
        spec.validate_request(method, path, body)
    assert bodies[-1][2]["invoiceLines"][0] == {"operation": "Delete", "lineNumber": {"value": 1}}


def test_zz_no_spec_violations_in_this_module() -> None:
    assert any(request.startswith("POST /v2/customerinvoice") for request in SEEN["requests"])
    assert SEEN["violations"] == []
