"""The Visma.net provider's invoices against the stateful fake (drafts, release, AutoInvoice,
redelivery, deletion), then the spec as oracle, and the check that no request in these modules
violated it."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import aiohttp
import pytest

from contracts import Action, Entity, InvoiceLine, Project, Supplier
from providers.errors import MappingError, NotSupported, ProviderRejected
from providers.settings import SettingsReader
from providers.visma_net import mapping
from tests.fakes.visma_net import SPEC_NAME, FakeVismaNet
from tests.integration.provider_contract import change, http
from tests.integration.visma_net_rig import SEEN, customer, deletion, fake, invoice, provider
from tests.openapi import load_spec

__all__ = ["fake", "http"]  # the fixtures


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


@pytest.mark.parametrize("release", ["false", "true"])
async def test_a_users_edit_of_a_draft_before_the_read_back_is_not_claimed_as_ours(
    fake: FakeVismaNet, http: aiohttp.ClientSession, release: str
) -> None:
    """As with customers: Visma answers an invoice's write (and its release) without the invoice, so
    its version is read back; a user's edit in between must not be claimed as our write. A release
    (status only) between our write and the read-back is ours and keeps the claim."""
    fake.seed_customer("10001")
    erp = provider(fake, http, release_invoices=release)
    created = await erp.push(change(invoice()))
    number = created.external_id or ""
    assert created.version == fake.invoices[number]["lastModifiedDateTime"]  # nobody in between

    fresh = await erp.push(change(invoice("inv-2")))

    def edit_once(kind: str, key: str) -> None:
        fake.after_api_write = None
        fake.user_update(kind, key, customerRefNumber="User's ref")

    fake.after_api_write = edit_once
    edited = await erp.push(change(invoice("inv-3")))

    assert fresh.version == fake.invoices[fresh.external_id or ""]["lastModifiedDateTime"]
    assert fake.invoices[edited.external_id or ""]["customerRefNumber"] == "User's ref"
    assert edited.outcome == "created"
    assert edited.version is None, "the user's version was claimed as the one we wrote"


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
