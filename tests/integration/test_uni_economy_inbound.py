"""Uni Economy inbound against its fake: the shared inbound tests (``TestUniEconomyInbound``: fetch +
to_cw, our writes' webhooks), then what only Uni does (a user's event-plan webhooks, registration)."""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp
import pytest

from contracts import Entity
from providers.base import ConnectionSpec, InboundChange
from providers.errors import MappingError
from providers.uni_economy import UniEconomyProvider
from providers.uni_economy.provider import EVENT_PLAN_NAME
from providers.uni_economy.webhooks import parse_webhook
from tests.fakes.receiver import Receiver, serve_receiver
from tests.fakes.serve import ServedFake
from tests.fakes.uni_economy import API_USER, OTHER_USER, FakeUni
from tests.integration.inbound_erp import (
    CUSTOMER,
    INVOICE,
    PROJECT,
    SUPPLIER,
    InboundContract,
    InboundHarness,
    by_entity,
    inbound_fixtures,
)
from tests.integration.test_tripletex_provider import change

SECRET = "whsec-uni-1"


class UniInbound(InboundHarness[FakeUni]):
    kind = "uni_economy"
    fake_type = FakeUni
    provider_type = UniEconomyProvider
    settings = {"finalise_invoices": "true"}  # noqa: RUF012 - read only
    # The invoice's number is Uni's own: the first one the fake gives is 100001, which INVOICE uses,
    # so the round trip holds for it.
    records = by_entity(CUSTOMER, SUPPLIER, PROJECT, INVOICE)
    missing = ((Entity.customer, "424242"), (Entity.project, "P-77"))
    our_author = API_USER

    def subscribe(self, url: str) -> None:
        self.fake.add_event_plan(url, SECRET)

    def parse(self, headers: Mapping[str, str], body: bytes) -> list[InboundChange]:
        return parse_webhook(headers, body, secret=SECRET)


served, erp, fake, provider, receiver = inbound_fixtures(UniInbound)


class TestUniEconomyInbound(InboundContract):
    pass


async def test_a_project_is_linked_to_its_customer_by_number(
    fake: FakeUni, provider: UniEconomyProvider
) -> None:
    customer = await provider.push(change(CUSTOMER))
    await provider.push(change(PROJECT))

    [project] = fake.entities("projects")
    assert str(project["ProjectCustomerID"]) == customer.external_id


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


async def test_a_user_change_fires_a_webhook_with_another_author_and_version(
    erp: UniInbound, fake: FakeUni, provider: UniEconomyProvider, receiver: Receiver
) -> None:
    pushed, inbound = await erp.user_changed(
        provider, receiver, lambda made: fake.user_update("customers", int(made), OrgNumber="111222333")
    )

    assert inbound.author == OTHER_USER != pushed.author
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
