"""The Tripletex provider's invoices against the fake Tripletex: an order, charged (and sent when the
setting says so), redelivered, recovered, and what Tripletex cannot do with a charged one."""

from __future__ import annotations

import datetime as dt

import pytest

from contracts import Action
from providers.errors import NotSupported, TransientError
from tests.fakes.tripletex import FakeTripletex
from tests.integration.provider_contract import change, http
from tests.integration.tripletex_rig import INVOICE, LINES, Make, erp, fake, make, with_customer

__all__ = ["erp", "fake", "http", "make"]  # the fixtures


async def test_invoice_creates_order_and_charges_it_without_sending(fake: FakeTripletex, make: Make) -> None:
    provider = make()
    await with_customer(provider)
    result = await provider.push(change(INVOICE))

    [order], [invoice] = fake.objects("order"), fake.objects("invoice")
    assert (result.outcome, result.external_id) == ("created", str(invoice["id"]))
    assert invoice["orders"] == [{"id": order["id"]}] and invoice["invoiceDate"] == "2024-05-02"
    assert fake.sent_to_customer[invoice["id"]] is False
    assert [line["vatType"] for line in order["orderLines"]] == [{"id": 3}, {"id": 6}]
    assert order["invoicesDueIn"] == 14 and order["reference"] == "PO 55"


async def test_invoice_sent_when_setting_says_so(fake: FakeTripletex, make: Make) -> None:
    provider = make({"send_invoices": "true"})
    await with_customer(provider)
    result = await provider.push(change(INVOICE))
    assert fake.sent_to_customer[int(str(result.external_id))] is True


async def test_invoice_redelivery_is_unchanged(fake: FakeTripletex, make: Make) -> None:
    provider = make()
    await with_customer(provider)
    first = await provider.push(change(INVOICE))
    again = await make().push(change(INVOICE, recovering=True))

    assert (again.outcome, again.external_id) == ("unchanged", first.external_id)
    assert len(fake.objects("order")) == len(fake.objects("invoice")) == 1


async def test_invoice_recovering_after_order_but_before_charge(fake: FakeTripletex, make: Make) -> None:
    provider = make()
    await with_customer(provider)
    fake.fail_next(1, 503, on="PUT /order/")
    with pytest.raises(TransientError):
        await provider.push(change(INVOICE))

    result = await provider.push(change(INVOICE, recovering=True))
    assert result.outcome == "created"
    assert len(fake.objects("order")) == len(fake.objects("invoice")) == 1 and fake.writes["order"] == 1


async def test_invoice_changed_before_its_order_was_charged(fake: FakeTripletex, make: Make) -> None:
    provider = make()
    await with_customer(provider)
    fake.fail_next(1, 503, on="PUT /order/")
    with pytest.raises(TransientError):
        await provider.push(change(INVOICE))

    result = await provider.push(change(INVOICE.model_copy(update={"lines": LINES[:1]}), Action.updated))
    [order] = fake.objects("order")
    assert result.outcome == "created" and fake.writes["order"] == 2
    assert [line["description"] for line in order["orderLines"]] == ["Roofing"]


async def test_changing_a_charged_invoice_is_not_supported(fake: FakeTripletex, make: Make) -> None:
    provider = make()
    await with_customer(provider)
    await provider.push(change(INVOICE))
    changed = INVOICE.model_copy(update={"lines": LINES[:1]})
    with pytest.raises(NotSupported, match="already charged"):
        await provider.push(change(changed, Action.updated))


@pytest.mark.parametrize(
    "update",
    [{"reference": "PO 4711"}, {"due_date": dt.date(2024, 5, 30)}],
    ids=["only the reference", "only the due date"],
)
async def test_a_charged_invoice_changed_only_in_its_head_is_not_supported_not_unchanged(
    fake: FakeTripletex, make: Make, update: dict[str, object]
) -> None:
    provider = make()
    await with_customer(provider)
    await provider.push(change(INVOICE))
    with pytest.raises(NotSupported, match="already charged"):
        await provider.push(change(INVOICE.model_copy(update=update), Action.updated))


async def test_deleting_an_invoice_is_not_supported(fake: FakeTripletex, make: Make) -> None:
    with pytest.raises(NotSupported, match="credit notes are out of scope"):
        await make().push(change(INVOICE, Action.deleted))
    assert fake.requests == []


async def test_foreign_currency_invoice_is_not_supported(make: Make) -> None:
    provider = make()
    await with_customer(provider)
    with pytest.raises(NotSupported, match="EUR"):
        await provider.push(change(INVOICE.model_copy(update={"currency": "EUR"})))
