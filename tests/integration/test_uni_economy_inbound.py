"""Uni Economy inbound: fetch + to_cw, the fake's event-plan webhooks (ours and a user's), registration."""

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
from providers.uni_economy import UniEconomyProvider
from providers.uni_economy.provider import EVENT_PLAN_NAME
from providers.uni_economy.webhooks import parse_webhook
from tests.fakes.receiver import Receiver, serve_receiver
from tests.fakes.serve import ServedFake, serve_fake
from tests.fakes.uni_economy import API_USER, OTHER_USER, FakeUni
from tests.integration.test_tripletex_provider import change

SECRET = "whsec-uni-1"
OSLO = Address(street="Storgata 1", postal_code="0150", city="Oslo", country="NO")
CUSTOMER = Customer(
    id="c-1",
    number="1001",
    name="Acme AS",
    org_number="999888777",
    email="a@acme.no",
    phone="+47 22 00 00 00",
    address=OSLO,
)
SUPPLIER = Supplier(id="s-1", number="501", name="Bygg AB", email="post@bygg.se", address=OSLO)
PROJECT = Project(
    id="p-1",
    number="P-77",
    name="New roof",
    customer_id="c-1",
    customer_number="1001",
    start_date=dt.date(2024, 5, 1),
    end_date=dt.date(2024, 9, 1),
)
INVOICE = Invoice(
    id="i-1",
    number="100001",
    customer_id="c-1",
    customer_number="1001",
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
            description="Permit fee",
            quantity=Decimal("1"),
            unit_price=Decimal("400"),
            vat_rate=Decimal("0"),
            account="3100",
        ),
    ],
)
# What Uni cannot hold: CW's own ids. The invoice's number is Uni's own (the first one the fake
# gives is 100001, which INVOICE uses, so the round trip holds for it).
UNSTORED = {"id", "customer_id", "project_id", "project_number"}


@pytest.fixture
async def served() -> AsyncIterator[ServedFake]:
    async with serve_fake("uni_economy") as running:
        yield running
    assert isinstance(running.fake, FakeUni) and running.fake.violations == []


@pytest.fixture
def fake(served: ServedFake) -> FakeUni:
    assert isinstance(served.fake, FakeUni)
    return served.fake


@pytest.fixture
async def provider(served: ServedFake) -> AsyncIterator[UniEconomyProvider]:
    settings = {**served.settings, "finalise_invoices": "true"}
    async with aiohttp.ClientSession() as http:
        spec = ConnectionSpec("acme", "uni_economy", served.base_url, settings, served.credentials)
        yield UniEconomyProvider(spec, http)


@pytest.fixture
async def receiver(fake: FakeUni) -> AsyncIterator[Receiver]:
    async with serve_receiver() as hook:
        fake.add_event_plan(hook.url, SECRET)
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
    provider: UniEconomyProvider, entity: Entity, record: CWRecord
) -> None:
    customer = await provider.push(change(CUSTOMER))
    pushed = await provider.push(change(record))
    assert pushed.external_id is not None and customer.external_id is not None

    fetched = await provider.fetch(entity, pushed.external_id)

    assert fetched is not None
    assert (fetched.external_id, fetched.version, fetched.author) == (
        pushed.external_id,
        pushed.version,
        pushed.author,
    )
    assert fetched.author == API_USER
    draft = provider.to_cw(entity, fetched.value)
    assert rebuilt(record, dict(draft.fields)) == record
    # CW's customer_id is CW's own id: the worker resolves it from the customer's id in the ERP.
    linked = entity in (Entity.project, Entity.invoice)
    expected = (CWReference("customer_id", Entity.customer, customer.external_id),) if linked else ()
    assert draft.references == expected


async def test_a_project_is_linked_to_its_customer_by_number(
    fake: FakeUni, provider: UniEconomyProvider
) -> None:
    customer = await provider.push(change(CUSTOMER))
    await provider.push(change(PROJECT))

    [project] = fake.entities("projects")
    assert str(project["ProjectCustomerID"]) == customer.external_id


async def test_fetch_of_a_missing_record_is_none(provider: UniEconomyProvider) -> None:
    assert await provider.fetch(Entity.customer, "424242") is None
    assert await provider.fetch(Entity.project, "P-77") is None


async def test_a_draft_invoice_cannot_go_to_cw_yet(served: ServedFake) -> None:
    async with aiohttp.ClientSession() as http:
        spec = ConnectionSpec("acme", "uni_economy", served.base_url, served.settings, served.credentials)
        provider = UniEconomyProvider(spec, http)
        await provider.push(change(CUSTOMER))
        draft = await provider.push(change(INVOICE))
        fetched = await provider.fetch(Entity.invoice, str(draft.external_id))

    assert fetched is not None
    with pytest.raises(MappingError, match="draft without an InvoiceNumber"):
        provider.to_cw(Entity.invoice, fetched.value)


async def test_our_write_fires_a_signed_webhook_that_reads_as_our_echo(
    provider: UniEconomyProvider, receiver: Receiver
) -> None:
    created = await provider.push(change(CUSTOMER))
    updated = await provider.push(change(CUSTOMER.model_copy(update={"name": "Acme Holding AS"})))

    for pushed in (created, updated):
        [inbound] = parse_webhook(*await receiver.next(), secret=SECRET)
        assert (inbound.entity, inbound.external_id, inbound.version, inbound.author) == (
            Entity.customer,
            pushed.external_id,
            pushed.version,
            pushed.author,
        )
    assert created.version != updated.version


async def test_a_user_change_fires_a_webhook_with_another_author_and_version(
    fake: FakeUni, provider: UniEconomyProvider, receiver: Receiver
) -> None:
    pushed = await provider.push(change(CUSTOMER))
    await receiver.next()

    fake.user_update("customers", int(str(pushed.external_id)), OrgNumber="111222333")

    [inbound] = parse_webhook(*await receiver.next(), secret=SECRET)
    assert inbound.author == OTHER_USER != pushed.author
    assert inbound.version != pushed.version
    assert inbound.value is not None
    assert provider.to_cw(Entity.customer, inbound.value).fields["org_number"] == "111222333"


async def test_user_create_and_delete_fire_their_events(fake: FakeUni, receiver: Receiver) -> None:
    made = fake.user_create("suppliers", {"SupplierNumber": 900, "Info": {"Name": "Made by hand"}})
    [created] = parse_webhook(*await receiver.next(), secret=SECRET)
    fake.user_delete("suppliers", made["ID"])
    [deleted] = parse_webhook(*await receiver.next(), secret=SECRET)

    assert (created.action.value, created.author, created.external_id) == (
        "created",
        OTHER_USER,
        str(made["ID"]),
    )
    assert (deleted.action.value, deleted.value) == ("deleted", None)


async def test_the_fake_answers_before_its_webhook_is_received(
    fake: FakeUni, provider: UniEconomyProvider, receiver: Receiver
) -> None:
    receiver.gate.clear()  # the receiver holds its answer until the push has returned
    pushed = await asyncio.wait_for(provider.push(change(CUSTOMER)), 5)
    await receiver.next()
    receiver.gate.set()
    await fake.callbacks.drain()

    assert pushed.outcome == "created"
    assert [d.status for d in fake.callbacks.deliveries] == [202]


async def test_register_webhook_creates_one_event_plan_then_updates_it(
    fake: FakeUni, provider: UniEconomyProvider
) -> None:
    async with serve_receiver() as hook:
        first = await provider.register_webhook(hook.url, "old-secret")
        again = await provider.register_webhook(hook.url, SECRET)
        await provider.push(change(SUPPLIER))
        [inbound] = parse_webhook(*await hook.next(), secret=SECRET)

    [plan] = fake.entities("eventplans")
    assert "created" in first and "updated" in again
    assert (plan["Name"], plan["OperationFilter"], plan["SigningKey"]) == (EVENT_PLAN_NAME, "CUD", SECRET)
    assert [s["Endpoint"] for s in plan["Subscribers"]] == [hook.url]
    assert inbound.entity is Entity.supplier
