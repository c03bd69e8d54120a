"""Tripletex inbound against its fake: the shared inbound tests (``TestTripletexInbound``: fetch +
to_cw, our writes' webhooks), then what only Tripletex does (a user's webhooks, registration)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest

from contracts import Entity
from providers.base import InboundChange
from providers.errors import MappingError, ProviderRejected
from providers.tripletex import TripletexProvider
from providers.tripletex.provider import WEBHOOK_EVENTS
from providers.tripletex.webhooks import parse_webhook
from tests.fakes.receiver import Receiver, serve_receiver
from tests.fakes.tripletex import API_EMPLOYEE_ID, USER_EMPLOYEE_ID, FakeTripletex
from tests.integration.inbound_erp import InboundContract, InboundHarness, by_entity, inbound_fixtures
from tests.integration.test_tripletex_provider import CUSTOMER, INVOICE, PROJECT, SUPPLIER, change

SECRET = "whsec-tripletex-1"


class TripletexInbound(InboundHarness[FakeTripletex]):
    kind = "tripletex"
    fake_type = FakeTripletex
    provider_type = TripletexProvider
    records = by_entity(CUSTOMER, SUPPLIER, PROJECT.model_copy(update={"customer_number": "1001"}), INVOICE)
    missing = ((Entity.customer, "424242"), (Entity.invoice, "not-a-number"))
    our_author = str(API_EMPLOYEE_ID)
    hook_headers = ("idempotency-key",)

    def subscribe(self, url: str) -> None:
        self.fake.subscribe(url, SECRET, WEBHOOK_EVENTS)

    def parse(self, headers: Mapping[str, str], body: bytes) -> list[InboundChange]:
        return parse_webhook(headers, body, secret=SECRET)


served, erp, fake, provider, receiver = inbound_fixtures(TripletexInbound)


class TestTripletexInbound(InboundContract):
    pass


async def test_an_incomplete_address_is_a_mapping_error_naming_the_gap(
    fake: FakeTripletex, provider: TripletexProvider
) -> None:
    made = fake.add("customer", {"name": "Half", "customerNumber": 7, "postalAddress": {"city": "Oslo"}})
    fetched = await provider.fetch(Entity.customer, str(made["id"]))
    assert fetched is not None

    with pytest.raises(MappingError, match="without street, postal_code, country"):
        provider.to_cw(Entity.customer, fetched.value)


async def test_a_user_change_fires_a_webhook_with_another_author_and_version(
    erp: TripletexInbound, fake: FakeTripletex, provider: TripletexProvider, receiver: Receiver
) -> None:
    pushed, inbound = await erp.user_changed(
        provider, receiver, lambda made: fake.user_update("customer", int(made), name="Acme Renamed AS")
    )

    assert inbound.author == str(USER_EMPLOYEE_ID) != pushed.author
    assert inbound.value is not None
    assert provider.to_cw(Entity.customer, inbound.value).fields["name"] == "Acme Renamed AS"


async def test_a_user_delete_and_an_invoice_fire_their_events(
    fake: FakeTripletex, provider: TripletexProvider, receiver: Receiver
) -> None:
    await provider.push(change(CUSTOMER))
    await receiver.next()
    invoiced = await provider.push(change(INVOICE))
    [charged] = parse_webhook(*await receiver.next(), secret=SECRET)
    assert (charged.entity, charged.external_id, charged.version) == (
        Entity.invoice,
        invoiced.external_id,
        invoiced.version,
    )

    supplier = fake.user_create("supplier", {"name": "Made by hand", "supplierNumber": 900})
    [created] = parse_webhook(*await receiver.next(), secret=SECRET)
    fake.user_delete("supplier", supplier["id"])
    [deleted] = parse_webhook(*await receiver.next(), secret=SECRET)
    assert (created.action.value, deleted.action.value, deleted.value) == ("created", "deleted", None)


async def test_register_webhook_subscribes_each_event_once_and_rotates_the_secret(
    fake: FakeTripletex, provider: TripletexProvider
) -> None:
    async with serve_receiver() as hook:
        first = await provider.register_webhook(hook.url, "old-secret")
        again = await provider.register_webhook(hook.url, SECRET)
        await provider.push(change(CUSTOMER))

        [inbound] = parse_webhook(*await hook.next(), secret=SECRET)

    assert first.startswith("tripletex: 10 event subscriptions created, 0 updated")
    assert again.startswith("tripletex: 0 event subscriptions created, 10 updated")
    assert sorted(s["event"] for s in fake.subscriptions.values()) == sorted(WEBHOOK_EVENTS)
    assert {s["fields"] for s in fake.subscriptions.values()} == {"*,version,changes"}
    assert inbound.entity is Entity.customer
    assert fake.writes["subscription"] == 20


async def test_register_webhook_refuses_a_plain_http_url(provider: TripletexProvider) -> None:
    with pytest.raises(MappingError, match="HTTPS"):
        await provider.register_webhook("http://cwi.example/webhooks/tripletex/t", SECRET)


async def test_webhooks_are_delivered_in_the_background(
    fake: FakeTripletex, provider: TripletexProvider
) -> None:
    # No receiver at all: the write still succeeds, the failed delivery is recorded.
    fake.subscribe("http://127.0.0.1:9/nowhere", SECRET, ("customer.create",))
    pushed = await provider.push(change(CUSTOMER))
    await asyncio.wait_for(fake.callbacks.drain(), 10)

    assert pushed.outcome == "created"
    assert [d.status for d in fake.callbacks.deliveries] == [None]


async def test_a_listing_that_tripletex_never_ends_stops_with_the_reason(
    fake: FakeTripletex, provider: TripletexProvider
) -> None:
    """``from`` ignored: every page was the first, read for ever (providers.listing.Paging)."""
    for number in (7, 8):
        fake.add("customer", {"name": f"C{number}", "customerNumber": number})
    fake.ignore_paging = True
    with pytest.raises(ProviderRejected, match=r"Tripletex GET /customer: page 2 repeats page 1"):
        async for _page in provider.list_records(Entity.customer, None, page_size=1):
            pass
