"""Visma.net inbound: fetch + to_cw, the fake's webhooks (ours and a user's), the registration steps."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from contracts import Address, Customer, CWRecord, Entity, Invoice, InvoiceLine, Project, Supplier
from providers.base import ConnectionSpec, CWReference
from providers.errors import MappingError
from providers.visma_net.provider import VismaNetProvider
from providers.visma_net.webhooks import parse_webhook
from tests.fakes.receiver import Receiver, serve_receiver
from tests.fakes.serve import ServedFake, serve_fake
from tests.fakes.visma_net import FakeVismaNet
from tests.integration.test_tripletex_provider import change

SECRET = "whsec-visma-1"
OSLO = Address(street="Storgata 1", postal_code="0150", city="Oslo", country="NO")
CUSTOMER = Customer(
    id="c-1",
    number="10001",
    name="Acme AS",
    org_number="999888777",
    email="a@acme.no",
    phone="+47 22 00 00 00",
    address=OSLO,
)
SUPPLIER = Supplier(id="s-1", number="20001", name="Bygg AB", email="post@bygg.se", address=OSLO)
PROJECT = Project(
    id="p-1",
    number="PRJ-9",
    name="New school",
    customer_id="c-1",
    customer_number="10001",
    start_date=dt.date(2024, 3, 1),
    end_date=dt.date(2024, 12, 1),
)
INVOICE = Invoice(
    id="i-1",
    number="INV-77",
    customer_id="c-1",
    customer_number="10001",
    invoice_date=dt.date(2024, 5, 2),
    due_date=dt.date(2024, 5, 16),
    currency="NOK",
    reference="PO 55",
    lines=[
        InvoiceLine(
            description="Roofing",
            quantity=Decimal("7.5"),
            unit_price=Decimal("950"),
            vat_rate=Decimal("25"),
            account="3000",
        ),
        InvoiceLine(
            description="Nails",
            quantity=Decimal("2"),
            unit_price=Decimal("40"),
            vat_rate=Decimal("0"),
            account="3100",
            product_number="NAIL-1",
        ),
    ],
)
UNSTORED = {"id", "customer_id", "project_id", "project_number"}
"""CW's own ids; Visma keys records by number (an invoice by the number Visma gives it)."""


@pytest.fixture
async def served() -> AsyncIterator[ServedFake]:
    async with serve_fake("visma_net") as running:
        yield running
    assert isinstance(running.fake, FakeVismaNet) and running.fake.violations == []


@pytest.fixture
def fake(served: ServedFake) -> FakeVismaNet:
    assert isinstance(served.fake, FakeVismaNet)
    return served.fake


@pytest.fixture
async def provider(served: ServedFake) -> AsyncIterator[VismaNetProvider]:
    async with aiohttp.ClientSession() as http:
        spec = ConnectionSpec("acme", "visma_net", served.base_url, served.settings, served.credentials)
        yield VismaNetProvider(spec, http)


@pytest.fixture
async def receiver(fake: FakeVismaNet) -> AsyncIterator[Receiver]:
    async with serve_receiver() as hook:
        fake.configure_webhook(hook.url, SECRET)
        yield hook


def rebuilt(record: CWRecord, fields: dict[str, Any]) -> CWRecord:
    kept = {k: v for k, v in record.model_dump(mode="json").items() if k in UNSTORED}
    return type(record).model_validate_json(json.dumps({**kept, **fields}))


@pytest.mark.parametrize(
    ("entity", "record"),
    [
        (Entity.customer, CUSTOMER),
        (Entity.supplier, SUPPLIER),
        (Entity.project, PROJECT),
        (Entity.invoice, INVOICE),
    ],
)
async def test_fetch_and_to_cw_give_back_what_we_pushed(
    provider: VismaNetProvider, entity: Entity, record: CWRecord
) -> None:
    customer = await provider.push(change(CUSTOMER))
    pushed = await provider.push(change(record))
    assert pushed.external_id is not None and customer.external_id is not None

    fetched = await provider.fetch(entity, pushed.external_id)

    assert fetched is not None
    assert (fetched.external_id, fetched.version, fetched.author) == (
        pushed.external_id,
        pushed.version,
        None,
    )
    assert fetched.version is not None
    draft = provider.to_cw(entity, fetched.value)
    assert rebuilt(record, dict(draft.fields)) == record
    # CW's customer_id is CW's own id: the worker resolves it from the customer's id in the ERP.
    linked = entity in (Entity.project, Entity.invoice)
    expected = (CWReference("customer_id", Entity.customer, customer.external_id),) if linked else ()
    assert draft.references == expected


async def test_a_project_is_linked_to_its_customer_by_number(
    fake: FakeVismaNet, provider: VismaNetProvider
) -> None:
    await provider.push(change(CUSTOMER))
    await provider.push(change(PROJECT))

    assert fake.stores["project"].records["PRJ-9"]["customer"] == "10001"


async def test_fetch_of_a_missing_record_is_none(provider: VismaNetProvider) -> None:
    assert await provider.fetch(Entity.customer, "99999") is None
    assert await provider.fetch(Entity.invoice, "000404") is None


async def test_a_vat_code_no_setting_names_is_a_mapping_error(
    fake: FakeVismaNet, provider: VismaNetProvider
) -> None:
    await provider.push(change(CUSTOMER))
    pushed = await provider.push(change(INVOICE))
    fake.invoices[str(pushed.external_id)]["invoiceLines"][0]["vatCodeId"] = "1"
    fetched = await provider.fetch(Entity.invoice, str(pushed.external_id))
    assert fetched is not None

    with pytest.raises(MappingError, match=r"VAT code '1' is named by 0 vat_code.<rate> settings"):
        provider.to_cw(Entity.invoice, fetched.value)


async def test_our_write_fires_a_signed_webhook_that_reads_as_our_echo(
    served: ServedFake, provider: VismaNetProvider, receiver: Receiver
) -> None:
    created = await provider.push(change(CUSTOMER))
    updated = await provider.push(change(CUSTOMER.model_copy(update={"name": "Acme Holding AS"})))

    for pushed in (created, updated):
        [inbound] = parse_webhook(*await receiver.next(), secret=SECRET, settings=served.settings)
        assert (inbound.entity, inbound.external_id, inbound.version) == (
            Entity.customer,
            pushed.external_id,
            pushed.version,
        )
    assert created.version != updated.version


async def test_a_user_change_fires_a_webhook_with_another_version(
    served: ServedFake, fake: FakeVismaNet, provider: VismaNetProvider, receiver: Receiver
) -> None:
    pushed = await provider.push(change(CUSTOMER))
    await receiver.next()

    fake.user_update("customer", "10001", name="Acme Renamed AS")

    [inbound] = parse_webhook(*await receiver.next(), secret=SECRET, settings=served.settings)
    assert inbound.version is not None and inbound.version != pushed.version
    fetched = await provider.fetch(Entity.customer, inbound.external_id)
    assert fetched is not None and fetched.version == inbound.version
    assert provider.to_cw(Entity.customer, fetched.value).fields["name"] == "Acme Renamed AS"


async def test_a_user_created_supplier_and_our_invoice_fire_their_events(
    served: ServedFake, fake: FakeVismaNet, provider: VismaNetProvider, receiver: Receiver
) -> None:
    fake.user_create("supplier", {"number": "20009", "name": "Made by hand"})
    [made] = parse_webhook(*await receiver.next(), secret=SECRET, settings=served.settings)
    await provider.push(change(CUSTOMER))
    await receiver.next()
    invoiced = await provider.push(change(INVOICE))
    [inbound] = parse_webhook(*await receiver.next(), secret=SECRET, settings=served.settings)

    assert (made.entity, made.action.value, made.external_id) == (Entity.supplier, "created", "20009")
    assert (inbound.entity, inbound.external_id, inbound.version) == (
        Entity.invoice,
        invoiced.external_id,
        invoiced.version,
    )


async def test_the_fake_answers_before_its_webhook_is_received(
    fake: FakeVismaNet, provider: VismaNetProvider, receiver: Receiver
) -> None:
    receiver.gate.clear()  # the receiver holds its answer until the push has returned
    pushed = await asyncio.wait_for(provider.push(change(CUSTOMER)), 5)
    await receiver.next()
    receiver.gate.set()
    await fake.callbacks.drain()

    assert pushed.outcome == "created"
    assert [d.status for d in fake.callbacks.deliveries] == [202]


async def test_register_webhook_gives_the_portal_steps_without_the_secret(
    served: ServedFake, fake: FakeVismaNet, provider: VismaNetProvider
) -> None:
    steps = await provider.register_webhook("https://cwi.example/webhooks/visma_net/tok", SECRET)

    assert "no API" in steps and "https://cwi.example/webhooks/visma_net/tok" in steps
    assert served.settings["tenant_id"] in steps and "X-Visma-Signature" in steps
    assert SECRET not in steps
    assert fake.requests == []
