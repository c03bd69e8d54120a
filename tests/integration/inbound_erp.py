"""What every ERP's inbound side does, run against each vendor's fake over real HTTP.

Each vendor's inbound module describes its ERP in an ``InboundHarness`` subclass, declares the
fixtures of ``inbound_fixtures`` for it, and subclasses ``InboundContract`` for the shared tests
(as ``provider_contract`` is shared by the provider tests). What only one vendor does stays in its
own module. The sample records here are Uni Economy's; Visma.net renumbers them, Tripletex keeps
those of its provider tests.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Mapping
from decimal import Decimal
from typing import Any, ClassVar, Generic, TypeVar, cast

import aiohttp
import pytest

from contracts import Address, Customer, CWRecord, Entity, Invoice, InvoiceLine, Project, Supplier
from providers.base import ConnectionSpec, CWReference, InboundChange, PushResult
from providers.vendor import VendorProvider
from tests.fakes.receiver import Receiver, serve_receiver
from tests.fakes.serve import Fake, ServedFake, serve_fake
from tests.integration.test_tripletex_provider import change

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
ROOFING = InvoiceLine(
    description="Roofing",
    quantity=Decimal("7.5"),
    unit_price=Decimal("950"),
    vat_rate=Decimal("25"),
    account="3000",
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
        ROOFING,
        InvoiceLine(
            description="Permit fee",
            quantity=Decimal("1"),
            unit_price=Decimal("400"),
            vat_rate=Decimal("0"),
            account="3100",
        ),
    ],
)
UNSTORED = {"id", "customer_id", "project_id", "project_number"}
"""What no ERP holds: CW's own ids (CW resolves them from the numbers)."""


def by_entity(*records: CWRecord) -> dict[Entity, CWRecord]:
    """Each record under its entity."""
    return {Entity(type(record).__name__.lower()): record for record in records}


def rebuilt(record: CWRecord, fields: dict[str, Any]) -> CWRecord:
    """``record`` with every field the ERP stores taken from ``fields`` (to_cw's answer)."""
    kept = {k: v for k, v in record.model_dump(mode="json").items() if k in UNSTORED}
    return type(record).model_validate_json(json.dumps({**kept, **fields}))


F = TypeVar("F", bound=Fake)


class InboundHarness(ABC, Generic[F]):
    """One vendor's fake (an ``F``), as the inbound tests read it."""

    kind: ClassVar[str]
    fake_type: ClassVar[type[Fake]]
    provider_type: ClassVar[type[VendorProvider]]
    settings: ClassVar[dict[str, str]] = {}
    """Settings of the connection beyond the fake's own."""
    records: ClassVar[dict[Entity, CWRecord]]
    """A record of each entity, pushed and read back; the invoice and project are the customer's."""
    missing: ClassVar[tuple[tuple[Entity, str], ...]]
    """Ids that name no record in the fake."""
    our_author: ClassVar[str]
    """The author the fake's webhooks name for our writes: the API user."""
    records_name_author: ClassVar[bool] = True
    """False where the ERP's records name no author, so neither a push nor a fetch says one."""
    hook_headers: ClassVar[tuple[str, ...]] = ()
    """Headers each of the fake's webhooks carries, beyond its signature."""

    def __init__(self, served: ServedFake) -> None:
        assert isinstance(served.fake, self.fake_type)
        self.served, self.fake = served, cast(F, served.fake)

    @property
    def customer(self) -> CWRecord:
        return self.records[Entity.customer]

    @property
    def record_author(self) -> str | None:
        """The author a push's result and a fetched record of ours name."""
        return self.our_author if self.records_name_author else None

    def make(self, http: aiohttp.ClientSession) -> VendorProvider:
        served = self.served
        settings = {**served.settings, **self.settings}
        spec = ConnectionSpec("acme", self.kind, served.base_url, settings, served.credentials)
        return self.provider_type(spec, http)

    @abstractmethod
    def subscribe(self, url: str) -> None:
        """Have the fake send its webhooks to ``url``."""

    @abstractmethod
    def parse(self, headers: Mapping[str, str], body: bytes) -> list[InboundChange]:
        """The changes of a webhook the fake sent."""

    async def user_changed(
        self, provider: VendorProvider, receiver: Receiver, user_update: Callable[[str], object]
    ) -> tuple[PushResult, InboundChange]:
        """Our push of ``customer`` (its webhook let go), then a user's change of it in the ERP
        (``user_update`` of its external id): the push's result and the change's webhook, which
        names a version of its own."""
        pushed = await provider.push(change(self.customer))
        await receiver.next()
        user_update(str(pushed.external_id))
        [inbound] = self.parse(*await receiver.next())
        assert inbound.version is not None and inbound.version != pushed.version
        return pushed, inbound


def inbound_fixtures(harness: type[InboundHarness[Any]]) -> tuple[object, ...]:
    """The fixtures ``served``, ``erp``, ``fake``, ``provider`` and ``receiver`` for ``harness``'s
    vendor. A module binds them to those names (pytest finds a fixture by the name it is bound to):
    ``served, erp, fake, provider, receiver = inbound_fixtures(...)``. ``receiver`` subscribes the
    fake to a webhook receiver; a test without it gets no webhooks."""

    @pytest.fixture
    async def served() -> AsyncIterator[ServedFake]:
        async with serve_fake(harness.kind) as running:
            yield running
        assert running.fake.violations == []

    @pytest.fixture
    def erp(served: ServedFake) -> InboundHarness[Any]:
        return harness(served)

    @pytest.fixture
    def fake(erp: InboundHarness[Any]) -> Fake:
        return erp.served.fake

    @pytest.fixture
    async def provider(erp: InboundHarness[Any]) -> AsyncIterator[VendorProvider]:
        async with aiohttp.ClientSession() as http:
            yield erp.make(http)

    @pytest.fixture
    async def receiver(erp: InboundHarness[Any]) -> AsyncIterator[Receiver]:
        async with serve_receiver() as hook:
            erp.subscribe(hook.url)
            yield hook

    return served, erp, fake, provider, receiver


class InboundContract:
    """The shared tests; a subclass's module declares the fixtures of ``inbound_fixtures``."""

    @pytest.mark.parametrize("entity", [Entity.customer, Entity.supplier, Entity.project, Entity.invoice])
    async def test_fetch_and_to_cw_give_back_what_we_pushed(
        self, erp: InboundHarness[Any], provider: VendorProvider, entity: Entity
    ) -> None:
        record = erp.records[entity]
        customer = await provider.push(change(erp.customer))
        pushed = await provider.push(change(record))
        assert pushed.external_id is not None and customer.external_id is not None

        fetched = await provider.fetch(entity, pushed.external_id)

        assert fetched is not None
        assert (fetched.external_id, fetched.version, fetched.author) == (
            pushed.external_id,
            pushed.version,
            erp.record_author,
        )
        assert pushed.author == erp.record_author and fetched.version is not None
        draft = provider.to_cw(entity, fetched.value)
        assert rebuilt(record, dict(draft.fields)) == record
        # CW's customer_id is CW's own id: the worker resolves it from the customer's id in the ERP.
        linked = entity in (Entity.project, Entity.invoice)
        expected = (CWReference("customer_id", Entity.customer, customer.external_id),) if linked else ()
        assert draft.references == expected

    async def test_fetch_of_a_missing_record_is_none(
        self, erp: InboundHarness[Any], provider: VendorProvider
    ) -> None:
        for entity, external_id in erp.missing:
            assert await provider.fetch(entity, external_id) is None, (entity, external_id)

    async def test_our_write_fires_a_signed_webhook_that_reads_as_our_echo(
        self, erp: InboundHarness[Any], provider: VendorProvider, receiver: Receiver
    ) -> None:
        created = await provider.push(change(erp.customer))
        updated = await provider.push(change(erp.customer.model_copy(update={"name": "Acme Holding AS"})))

        for pushed in (created, updated):
            [inbound] = erp.parse(*await receiver.next())
            assert (inbound.entity, inbound.external_id, inbound.version, inbound.author) == (
                Entity.customer,
                pushed.external_id,
                pushed.version,
                erp.our_author,
            )
            assert pushed.author == erp.record_author
        assert created.version != updated.version

    async def test_the_fake_answers_before_its_webhook_is_received(
        self, erp: InboundHarness[Any], fake: Fake, provider: VendorProvider, receiver: Receiver
    ) -> None:
        receiver.gate.clear()  # the receiver holds its answer until the push has returned

        # A fake that waited for the receiver would never answer: wait_for fails the test instead.
        pushed = await asyncio.wait_for(provider.push(change(erp.customer)), 5)
        headers, _ = await receiver.next()
        receiver.gate.set()
        await fake.callbacks.drain()

        assert pushed.outcome == "created" and all(headers[name] for name in erp.hook_headers)
        assert [d.status for d in fake.callbacks.deliveries] == [202]
