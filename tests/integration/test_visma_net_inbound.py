"""Visma.net inbound against its fake: the shared inbound tests (``TestVismaNetInbound``: fetch +
to_cw, our writes' webhooks), then what only Visma.net does (a user's webhooks, the registration steps)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal

import pytest

from contracts import Entity, InvoiceLine
from providers.base import InboundChange
from providers.errors import MappingError
from providers.visma_net.provider import VismaNetProvider
from providers.visma_net.webhooks import parse_webhook
from tests.fakes.receiver import Receiver
from tests.fakes.serve import ServedFake
from tests.fakes.visma_net import API_SUBJECT, FakeVismaNet
from tests.integration import inbound_erp
from tests.integration.inbound_erp import InboundContract, InboundHarness, inbound_fixtures
from tests.integration.test_tripletex_provider import change

SECRET = "whsec-visma-1"
# Visma keys records by number (an invoice by the number Visma gives it).
CUSTOMER = inbound_erp.CUSTOMER.model_copy(update={"number": "10001"})
SUPPLIER = inbound_erp.SUPPLIER.model_copy(update={"number": "20001"})
PROJECT = inbound_erp.PROJECT.model_copy(
    update={
        "number": "PRJ-9",
        "name": "New school",
        "customer_number": "10001",
        "start_date": dt.date(2024, 3, 1),
        "end_date": dt.date(2024, 12, 1),
    }
)
NAILS = InvoiceLine(
    description="Nails",
    quantity=Decimal("2"),
    unit_price=Decimal("40"),
    vat_rate=Decimal("0"),
    account="3100",
    product_number="NAIL-1",
)
INVOICE = inbound_erp.INVOICE.model_copy(
    update={"number": "INV-77", "customer_number": "10001", "lines": [inbound_erp.ROOFING, NAILS]}
)


class VismaNetInbound(InboundHarness[FakeVismaNet]):
    kind = "visma_net"
    fake_type = FakeVismaNet
    provider_type = VismaNetProvider
    records = inbound_erp.by_entity(CUSTOMER, SUPPLIER, PROJECT, INVOICE)
    missing = ((Entity.customer, "99999"), (Entity.invoice, "000404"))
    our_author = API_SUBJECT
    records_name_author = False  # Visma's DTOs name no author

    def subscribe(self, url: str) -> None:
        self.fake.configure_webhook(url, SECRET)

    def parse(self, headers: Mapping[str, str], body: bytes) -> list[InboundChange]:
        return parse_webhook(headers, body, secret=SECRET, settings=self.served.settings)


served, erp, fake, provider, receiver = inbound_fixtures(VismaNetInbound)


class TestVismaNetInbound(InboundContract):
    pass


async def test_a_project_is_linked_to_its_customer_by_number(
    fake: FakeVismaNet, provider: VismaNetProvider
) -> None:
    await provider.push(change(CUSTOMER))
    await provider.push(change(PROJECT))

    assert fake.stores["project"].records["PRJ-9"]["customer"] == "10001"


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


async def test_a_user_change_fires_a_webhook_with_another_version(
    erp: VismaNetInbound, fake: FakeVismaNet, provider: VismaNetProvider, receiver: Receiver
) -> None:
    _, inbound = await erp.user_changed(
        provider, receiver, lambda _: fake.user_update("customer", "10001", name="Acme Renamed AS")
    )

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


async def test_register_webhook_gives_the_portal_steps_without_the_secret(
    served: ServedFake, fake: FakeVismaNet, provider: VismaNetProvider
) -> None:
    steps = await provider.register_webhook("https://cwi.example/webhooks/visma_net/tok", SECRET)

    assert "no API" in steps and "https://cwi.example/webhooks/visma_net/tok" in steps
    assert served.settings["tenant_id"] in steps and "X-Visma-Signature" in steps
    assert SECRET not in steps
    assert fake.requests == []
