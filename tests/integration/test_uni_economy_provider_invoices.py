"""UniEconomyProvider's invoices against the Uni fake: drafts, their lines, finalising, foreign
currency, and the mapping errors and missing customer that keep one from being written."""

from __future__ import annotations

from decimal import Decimal

import pytest

from contracts import Action, Entity, InvoiceLine
from providers.base import OutboundChange
from providers.errors import DependencyMissing, MappingError, NotSupported
from providers.uni_economy import UniEconomyProvider
from tests.fakes.uni_economy import INVOICED, FakeUni
from tests.integration.provider_contract import change, http
from tests.integration.uni_economy_rig import CUSTOMER, MakeProvider, cert, fake, invoice, key, make, provider

__all__ = ["cert", "fake", "http", "key", "make", "provider"]  # the fixtures


async def test_vat_rates_compare_as_decimals(make: MakeProvider, fake: FakeUni) -> None:
    provider = make({"vat_code.25": "", "vat_code.25.00": "3"})
    await provider.push(change(CUSTOMER))
    await provider.push(change(invoice("i-dec")))
    assert fake.entities("invoices")[0]["Items"][0]["VatTypeID"] == 1


async def test_draft_invoice_flow(provider: UniEconomyProvider, fake: FakeUni) -> None:
    customer = await provider.push(change(CUSTOMER))
    result = await provider.push(change(invoice("i-draft")))
    [stored] = fake.entities("invoices")
    assert result.outcome == "created" and stored["StatusCode"] == 42001
    assert stored["CustomerID"] == int(customer.external_id or 0)
    assert stored["InternalNote"] == "cw-invoice:i-draft" and stored["YourReference"] == "Ola Nordmann"
    item = stored["Items"][0]
    assert (item["VatTypeID"], item["AccountID"], item["PriceExVat"], item["NumberOfItems"]) == (
        1,
        11,
        950.5,
        2.0,
    )
    deleted = await provider.push(OutboundChange("k", Entity.invoice, Action.deleted, "i-draft", None))
    assert deleted.outcome == "deleted" and fake.entities("invoices") == []


async def test_draft_invoice_update_replaces_lines(provider: UniEconomyProvider, fake: FakeUni) -> None:
    await provider.push(change(CUSTOMER))
    two = InvoiceLine(
        description="Deler", quantity=Decimal(1), unit_price=Decimal(10), vat_rate=Decimal(0), account="3100"
    )
    created = await provider.push(change(invoice("i-upd", invoice().lines[0], two)))
    one = InvoiceLine(description="Timer", quantity=Decimal(3), unit_price=Decimal(800), vat_rate=Decimal(25))
    updated = await provider.push(change(invoice("i-upd", one), Action.updated, known=created.external_id))
    [stored] = fake.entities("invoices")
    assert updated.outcome == "updated"
    assert [(i["ItemText"], i["VatTypeID"]) for i in stored["Items"]] == [("Timer", 1)]


async def test_finalised_invoice_cannot_change_or_be_deleted(make: MakeProvider, fake: FakeUni) -> None:
    provider = make({"finalise_invoices": "true"})
    await provider.push(change(CUSTOMER))
    result = await provider.push(change(invoice("i-fin")))
    [stored] = fake.entities("invoices")
    assert result.outcome == "created" and stored["StatusCode"] == INVOICED and stored["InvoiceNumber"]
    assert (await provider.push(change(invoice("i-fin")))).outcome == "unchanged"
    other = InvoiceLine(
        description="Ekstra", quantity=Decimal(1), unit_price=Decimal(5), vat_rate=Decimal(25)
    )
    with pytest.raises(NotSupported, match="credit it in Uni"):
        await provider.push(change(invoice("i-fin", other), Action.updated))
    with pytest.raises(NotSupported, match="only drafts can be deleted"):
        await provider.push(change(invoice("i-fin"), Action.deleted, known=result.external_id))


async def test_redelivery_finalises_a_draft_left_behind(make: MakeProvider, fake: FakeUni) -> None:
    await make().push(change(CUSTOMER))
    await make().push(change(invoice("i-half")))  # as if the crash came between create and finalise
    result = await make({"finalise_invoices": "true"}).push(change(invoice("i-half"), recovering=True))
    assert result.outcome == "updated" and fake.entities("invoices")[0]["StatusCode"] == INVOICED


async def test_foreign_currency_invoice(provider: UniEconomyProvider, fake: FakeUni) -> None:
    await provider.push(change(CUSTOMER))
    await provider.push(change(invoice("i-eur", currency="EUR")))
    [stored] = fake.entities("invoices")
    assert stored["CurrencyCodeID"] == 2 and stored["Items"][0]["PriceExVatCurrency"] == 950.5


@pytest.mark.parametrize(
    ("settings", "customer_number", "message"),
    [
        ({"send_invoices": "true"}, "1001", "remove setting send_invoices"),
        ({"vat_code.25": "99"}, "1001", r"VAT code '99' \(setting vat_code.25\) does not exist"),
        ({"revenue_account": "3999"}, "1001", r"account 3999 \(setting revenue_account\) does not exist"),
    ],
    ids=["send", "unknown-vat-code", "unknown-account"],
)
async def test_invoice_mapping_errors(
    make: MakeProvider, fake: FakeUni, settings: dict[str, str], customer_number: str, message: str
) -> None:
    await make().push(change(CUSTOMER))
    record = invoice("i-err").model_copy(update={"customer_number": customer_number})
    with pytest.raises(MappingError, match=message):
        await make(settings).push(change(record))
    assert fake.entities("invoices") == []


async def test_invoice_whose_customer_is_missing_waits(make: MakeProvider, fake: FakeUni) -> None:
    record = invoice("i-err").model_copy(update={"customer_number": "4040"})
    with pytest.raises(DependencyMissing, match="customer number 4040 is not in Uni Economy yet"):
        await make().push(change(record))
    assert fake.entities("invoices") == []
