"""UniEconomyProvider against the stateful Uni fake over real HTTP on 127.0.0.1: the shared provider
contract (``TestUniEconomyContract``), then what only Uni Economy does with customers, suppliers and
projects, the connections test and preview, and the spec as oracle. Invoices:
``test_uni_economy_provider_invoices.py``; limits, errors and credentials:
``test_uni_economy_provider_auth.py``; what they share: ``uni_economy_rig.py``."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from contracts import Action, Customer, Entity, InvoiceLine
from providers.base import content_hash
from providers.errors import AuthenticationFailed
from providers.http import HttpResponse
from providers.settings import SettingsReader
from providers.uni_economy import UniEconomyProvider
from providers.uni_economy import mapping as m
from providers.uni_economy.client import describe_error
from tests.fakes.uni_economy import API_USER, FakeUni, uni_spec
from tests.integration.provider_contract import (
    ProviderContract,
    change,
    deleted_between_lookup_and_put,
    http,
)
from tests.integration.uni_economy_rig import (
    ADDRESS,
    ALL_VIOLATIONS,
    CUSTOMER,
    PROJECT,
    SUPPLIER,
    MakeProvider,
    cert,
    erp,
    fake,
    invoice,
    key,
    make,
    provider,
)
from tests.openapi import SpecViolation

__all__ = ["cert", "erp", "fake", "http", "key", "make", "provider"]  # the fixtures


class TestUniEconomyContract(ProviderContract):
    pass


async def test_create_customer_maps_fields_and_reports_author(
    provider: UniEconomyProvider, fake: FakeUni
) -> None:
    result = await provider.push(change(CUSTOMER))
    [stored] = fake.entities("customers")
    assert result.outcome == "created"
    assert result.external_id == str(stored["ID"])
    assert result.author == API_USER and result.version == stored["CreatedAt"]
    assert result.content_hash == content_hash(m.customer_payload(CUSTOMER))
    assert stored["CustomerNumber"] == 1001 and stored["OrgNumber"] == "999888777"
    assert stored["Info"]["Name"] == "Acme AS"
    assert stored["Info"]["DefaultEmail"]["EmailAddress"] == "post@acme.no"
    assert stored["Info"]["InvoiceAddress"]["City"] == "Oslo"


async def test_update_by_known_id_keeps_nested_objects(provider: UniEconomyProvider, fake: FakeUni) -> None:
    created = await provider.push(change(CUSTOMER))
    info_id = fake.entities("customers")[0]["Info"]["ID"]
    renamed = CUSTOMER.model_copy(update={"name": "Acme Holding AS"})
    result = await provider.push(change(renamed, Action.updated, known=created.external_id))
    [stored] = fake.entities("customers")
    assert result.outcome == "updated" and result.external_id == created.external_id
    assert stored["Info"]["Name"] == "Acme Holding AS"
    assert stored["Info"]["ID"] == info_id  # updated in place, not a second BusinessRelation
    assert result.version == stored["UpdatedAt"] and result.author == API_USER


@pytest.mark.parametrize("record", [CUSTOMER, SUPPLIER, PROJECT], ids=["customer", "supplier", "project"])
async def test_redelivery_does_not_duplicate(
    provider: UniEconomyProvider, fake: FakeUni, record: Any
) -> None:
    first = await provider.push(change(record))
    second = await provider.push(change(record))
    collection = m.KINDS[Entity(type(record).__name__.lower())].collection
    assert (first.outcome, second.outcome) == ("created", "unchanged")
    assert second.external_id == first.external_id
    assert len(fake.entities(collection)) == 1 and fake.writes[collection] == 1


async def test_recovering_after_write_reached_uni(provider: UniEconomyProvider, fake: FakeUni) -> None:
    await provider.push(change(CUSTOMER))
    first = await provider.push(change(invoice("i-rec")))
    again = await provider.push(change(invoice("i-rec"), recovering=True))
    assert again.outcome == "unchanged" and again.external_id == first.external_id
    assert len(fake.entities("invoices")) == 1


async def test_an_entity_deleted_between_lookup_and_put_is_transient(
    provider: UniEconomyProvider, fake: FakeUni
) -> None:
    renamed = CUSTOMER.model_copy(update={"name": "Acme Holding AS"})
    await deleted_between_lookup_and_put(
        provider, fake, CUSTOMER, renamed, kind="customers", vendor="Uni Economy"
    )


async def test_stale_known_id_falls_back_to_natural_key(provider: UniEconomyProvider, fake: FakeUni) -> None:
    created = await provider.push(change(SUPPLIER))
    renamed = SUPPLIER.model_copy(update={"name": "Rør og Rør Vest AS"})
    result = await provider.push(change(renamed, Action.updated, known="999999"))
    assert result.outcome == "updated" and result.external_id == created.external_id
    assert [s["Info"]["Name"] for s in fake.entities("suppliers")] == ["Rør og Rør Vest AS"]


@pytest.mark.parametrize("record", [CUSTOMER, SUPPLIER, PROJECT], ids=["customer", "supplier", "project"])
async def test_delete(provider: UniEconomyProvider, fake: FakeUni, record: Any) -> None:
    created = await provider.push(change(record))
    deleted = await provider.push(change(record, Action.deleted, known=created.external_id))
    again = await provider.push(change(record, Action.deleted, known=created.external_id))
    collection = m.KINDS[Entity(type(record).__name__.lower())].collection
    assert (deleted.outcome, deleted.external_id) == ("deleted", created.external_id)
    assert again.outcome == "unchanged"
    assert fake.entities(collection) == []


async def test_check(provider: UniEconomyProvider, make: MakeProvider, fake: FakeUni) -> None:
    summary = await provider.check()
    assert summary == (
        f"uni_economy at {fake.base_url}/api/biz: authenticated as CW Integration; "
        f"changes we make carry author {API_USER}"
    )
    with pytest.raises(AuthenticationFailed, match="client_id unknown-client"):
        await make(credentials={"client_id": "unknown-client"}).check()


async def test_preview_names_what_push_would_look_up(make: MakeProvider, fake: FakeUni) -> None:
    provider = make({"finalise_invoices": "true"})
    [post, finalise] = provider.preview(change(invoice("i-pre")))
    [customer] = provider.preview(change(CUSTOMER))
    assert post.headers["CompanyKey"] == "***"
    assert (
        post.url == f"{fake.base_url}/api/biz/invoices"
        and post.json["CustomerID"] == "<ID of customer number 1001>"
    )
    assert finalise.url.endswith("/invoices/<ID of the new invoice>?action=invoice")
    assert customer.json == m.customer_payload(CUSTOMER)
    assert fake.requests == [] and fake.token_requests == 0


@pytest.mark.parametrize("expires_in", ["soon", "NaN", -5])
async def test_a_token_answer_without_a_usable_lifetime_is_kept_for_the_default(
    provider: UniEconomyProvider, fake: FakeUni, expires_in: object
) -> None:
    """Taken as it came: "soon" failed every push with ValueError, -5 and NaN fetched a token before
    every call."""
    fake.expires_in_answer = expires_in
    await provider.push(change(CUSTOMER))
    await provider.push(change(SUPPLIER))
    assert fake.token_requests == 1


def test_describe_error_reads_every_known_shape() -> None:
    body = b'{"Message": "Validation failed", "Messages": [{"PropertyName": "Name", "Message": "required"}],'
    body += b' "ModelState": {"Customer.OrgNumber": ["invalid"]}}'
    text = describe_error(HttpResponse(400, {}, body))
    assert text == "Validation failed; Name: required; Customer.OrgNumber: invalid"
    assert describe_error(HttpResponse(500, {}, b"<html>")) is None


def _bodies() -> list[tuple[str, str, Any]]:
    ids = m.InvoiceIds(customer=1001, vat_types=[1, 4], accounts=[11, 12], currency=2)
    lines = [
        *invoice().lines,
        InvoiceLine(description="x", quantity=Decimal(1), unit_price=Decimal(1), vat_rate=Decimal(0)),
    ]
    draft = m.invoice_payload(
        invoice("i-b", *lines), ids, SettingsReader("acme", "uni_economy", {"department_id": "4"})
    )
    stored = {"ID": 5, "Items": [{"ID": 8}, {"ID": 9}, {"ID": 10}], "DefaultDimensions": {"ID": 3}}
    full = Customer(
        id="c", number="7", name="N", org_number="1", email="e@x.no", phone="+47 1", address=ADDRESS
    )
    return [
        ("POST", "/customers", m.customer_payload(full)),
        ("PUT", "/customers/5", m.with_ids(m.customer_payload(full), {"ID": 5, "Info": {"ID": 6}})),
        ("POST", "/suppliers", m.supplier_payload(SUPPLIER.model_copy(update={"address": ADDRESS}))),
        (
            "POST",
            "/projects",
            m.project_payload(PROJECT.model_copy(update={"end_date": dt.date(2025, 1, 1)})),
        ),
        ("POST", "/invoices", draft),
        ("PUT", "/invoices/5", m.with_ids(draft, stored)),
    ]


@pytest.mark.parametrize(("method", "path", "body"), _bodies(), ids=lambda v: v if isinstance(v, str) else "")
def test_mapped_bodies_validate_against_the_spec(method: str, path: str, body: Any) -> None:
    uni_spec().validate_request(method, path, body)


def test_spec_oracle_catches_a_bad_body() -> None:
    with pytest.raises(SpecViolation, match="CustomerNumber"):
        uni_spec().validate_request("POST", "/customers", {"CustomerNumber": "1001"})
    with pytest.raises(SpecViolation, match="InvoiceDate"):
        uni_spec().validate_request("POST", "/invoices", {"InvoiceDate": 20240502})


async def test_fake_records_spec_violations(
    fake: FakeUni, http: aiohttp.ClientSession, provider: UniEconomyProvider
) -> None:
    url = f"{fake.base_url}/api/biz/customers"
    async with http.post(url, json={"CustomerNumber": "x"}) as resp:
        assert resp.status == 401  # auth comes first; then the body is checked
    token = await provider._client.tokens.get()  # the test borrows the real auth flow
    headers = {"Authorization": f"Bearer {token}", "CompanyKey": fake.company_key}
    async with http.post(url, json={"CustomerNumber": "x"}, headers=headers) as resp:
        assert resp.status == 400
    assert len(fake.violations) == 1
    fake.violations.clear()  # deliberate: the module-wide check below is about the provider's requests


async def test_no_spec_violations_in_any_request_of_these_modules(
    provider: UniEconomyProvider, fake: FakeUni
) -> None:
    """Every method the provider sends, in this test; and whatever the tests before it sent (on this
    process) against the spec too."""
    for record in (CUSTOMER, SUPPLIER):
        created = await provider.push(change(record))
        renamed = record.model_copy(update={"name": f"{record.name} II"})
        await provider.push(change(renamed, Action.updated, known=created.external_id))
        await provider.push(change(renamed, Action.deleted, known=created.external_id))

    assert {"GET", "POST", "PUT", "DELETE"} <= {method for method, _ in fake.requests}
    assert fake.violations == [] and ALL_VIOLATIONS == []
