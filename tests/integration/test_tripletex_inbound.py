"""Tripletex inbound: fetch + to_cw, the fake's webhooks (our writes and a user's), registration."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from contracts import CWRecord, Entity
from providers.base import ConnectionSpec, CWReference
from providers.errors import MappingError
from providers.tripletex import TripletexProvider
from providers.tripletex.provider import WEBHOOK_EVENTS
from providers.tripletex.webhooks import parse_webhook
from tests.fakes import serve_app
from tests.fakes.receiver import Receiver, serve_receiver
from tests.fakes.tripletex import API_EMPLOYEE_ID, USER_EMPLOYEE_ID, FakeTripletex
from tests.integration.test_tripletex_provider import (
    CREDENTIALS,
    CUSTOMER,
    INVOICE,
    PROJECT,
    SETTINGS,
    SUPPLIER,
    change,
)

SECRET = "whsec-tripletex-1"
# What Tripletex cannot hold: CW's own ids (CW resolves them from the numbers).
UNSTORED = {"id", "customer_id", "project_id", "project_number"}
LINKED_PROJECT = PROJECT.model_copy(update={"customer_number": "1001"})


@pytest.fixture
async def fake() -> AsyncIterator[FakeTripletex]:
    erp = FakeTripletex()
    async with serve_app(erp.app()) as url:
        erp.base_url = f"{url}/v2"
        yield erp
    assert erp.violations == []


@pytest.fixture
async def provider(fake: FakeTripletex) -> AsyncIterator[TripletexProvider]:
    async with aiohttp.ClientSession() as http:
        spec = ConnectionSpec("acme", "tripletex", fake.base_url, SETTINGS, CREDENTIALS)
        yield TripletexProvider(spec, http)


@pytest.fixture
async def receiver(fake: FakeTripletex) -> AsyncIterator[Receiver]:
    async with serve_receiver() as served:
        fake.subscribe(served.url, SECRET, WEBHOOK_EVENTS)
        yield served


def rebuilt(record: CWRecord, fields: dict[str, Any]) -> CWRecord:
    """``record`` with every field Tripletex stores taken from ``fields`` (to_cw's answer)."""
    kept = {k: v for k, v in record.model_dump(mode="json").items() if k in UNSTORED}
    return type(record).model_validate_json(json.dumps({**kept, **fields}))


@pytest.mark.parametrize(
    ("entity", "record"),
    [
        (Entity.customer, CUSTOMER),
        (Entity.supplier, SUPPLIER),
        (Entity.project, LINKED_PROJECT),
        (Entity.invoice, INVOICE),
    ],
)
async def test_fetch_and_to_cw_give_back_what_we_pushed(
    provider: TripletexProvider, entity: Entity, record: CWRecord
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
    draft = provider.to_cw(entity, fetched.value)
    assert rebuilt(record, dict(draft.fields)) == record
    # CW's customer_id is CW's own id: the worker resolves it from the customer's id in the ERP.
    linked = entity in (Entity.project, Entity.invoice)
    expected = (CWReference("customer_id", Entity.customer, customer.external_id),) if linked else ()
    assert draft.references == expected


async def test_fetch_of_a_missing_record_is_none(provider: TripletexProvider) -> None:
    assert await provider.fetch(Entity.customer, "424242") is None
    assert await provider.fetch(Entity.invoice, "not-a-number") is None


async def test_an_incomplete_address_is_a_mapping_error_naming_the_gap(
    fake: FakeTripletex, provider: TripletexProvider
) -> None:
    made = fake.add("customer", {"name": "Half", "customerNumber": 7, "postalAddress": {"city": "Oslo"}})
    fetched = await provider.fetch(Entity.customer, str(made["id"]))
    assert fetched is not None

    with pytest.raises(MappingError, match="without street, postal_code, country"):
        provider.to_cw(Entity.customer, fetched.value)


async def test_our_write_fires_a_signed_webhook_that_reads_as_our_echo(
    provider: TripletexProvider, receiver: Receiver
) -> None:
    created = await provider.push(change(CUSTOMER))
    updated = await provider.push(change(CUSTOMER.model_copy(update={"name": "Acme Holding AS"})))

    for pushed in (created, updated):
        [inbound] = parse_webhook(*await receiver.next(), secret=SECRET)
        assert (inbound.external_id, inbound.version, inbound.author) == (
            pushed.external_id,
            pushed.version,
            pushed.author,
        )
    assert updated.author == str(API_EMPLOYEE_ID) and created.version != updated.version


async def test_a_user_change_fires_a_webhook_with_another_author_and_version(
    fake: FakeTripletex, provider: TripletexProvider, receiver: Receiver
) -> None:
    pushed = await provider.push(change(CUSTOMER))
    await receiver.next()

    fake.user_update("customer", int(str(pushed.external_id)), name="Acme Renamed AS")

    [inbound] = parse_webhook(*await receiver.next(), secret=SECRET)
    assert inbound.author == str(USER_EMPLOYEE_ID) != pushed.author
    assert inbound.version != pushed.version
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


async def test_the_fake_answers_before_its_webhook_is_received(
    fake: FakeTripletex, provider: TripletexProvider, receiver: Receiver
) -> None:
    receiver.gate.clear()  # the receiver holds its answer until the push has returned

    # A fake that waited for the receiver would never answer: wait_for fails the test instead.
    pushed = await asyncio.wait_for(provider.push(change(CUSTOMER)), 5)
    headers, _ = await receiver.next()
    receiver.gate.set()
    await fake.callbacks.drain()

    assert pushed.outcome == "created" and headers["idempotency-key"]
    assert [d.status for d in fake.callbacks.deliveries] == [202]


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
