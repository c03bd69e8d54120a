"""The Tripletex provider against the fake Tripletex, over real HTTP on 127.0.0.1: the shared
provider contract (``TestTripletexContract``), then what only Tripletex does."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from contracts import Action, Address, Customer, CWRecord, Entity, Invoice, InvoiceLine, Project, Supplier
from providers.base import ConnectionSpec, OutboundChange, PushResult
from providers.errors import (
    AuthenticationFailed,
    DependencyMissing,
    MappingError,
    NotSupported,
    ProviderRejected,
    TransientError,
)
from providers.settings import SettingsReader
from providers.tripletex import TripletexProvider, mapping
from providers.tripletex.webhooks import parse_webhook
from tests.fakes import serve_app
from tests.fakes.tripletex import API_EMPLOYEE_ID, CONSUMER_TOKEN, EMPLOYEE_TOKEN, SPEC, FakeTripletex
from tests.integration.provider_contract import FakeHarness, ProviderContract
from tests.openapi import load_spec

SETTINGS = {"vat_code.25": "3", "vat_code.0": "6", "project_manager_id": "11"}
CREDENTIALS = {"consumer_token": CONSUMER_TOKEN, "employee_token": EMPLOYEE_TOKEN}
OSLO = Address(street="Storgata 1", postal_code="0150", city="Oslo", country="NO")
CUSTOMER = Customer(
    id="c-1", number="1001", name="Acme AS", org_number="999888777", email="a@acme.no", address=OSLO
)
SUPPLIER = Supplier(id="s-1", number="501", name="Bygg AB", address=OSLO.model_copy(update={"country": "SE"}))
PROJECT = Project(
    id="p-1", number="P-77", name="New roof", customer_id="1001", start_date=dt.date(2024, 5, 1)
)
LINES = [
    InvoiceLine(
        description="Roofing", quantity=Decimal("7.5"), unit_price=Decimal("950"), vat_rate=Decimal("25.00")
    ),
    InvoiceLine(
        description="Permit fee", quantity=Decimal("1"), unit_price=Decimal("400"), vat_rate=Decimal("0")
    ),
]
INVOICE = Invoice(
    id="i-1",
    number="20001",
    customer_id="c-1",
    customer_number="1001",
    invoice_date=dt.date(2024, 5, 2),
    due_date=dt.date(2024, 5, 16),
    currency="NOK",
    lines=LINES,
    reference="PO 55",
)
ENTITIES = {
    Customer: Entity.customer,
    Supplier: Entity.supplier,
    Project: Entity.project,
    Invoice: Entity.invoice,
}
ALL_FAKES: list[FakeTripletex] = []

Make = Callable[..., TripletexProvider]


def change(record: CWRecord, action: Action = Action.created, **kwargs: Any) -> OutboundChange:
    return OutboundChange(
        idempotency_key=uuid.uuid4().hex,
        entity=ENTITIES[type(record)],
        action=action,
        cw_id=record.id,
        record=record,
        **kwargs,
    )


@pytest.fixture
async def fake() -> AsyncIterator[FakeTripletex]:
    erp = FakeTripletex()
    ALL_FAKES.append(erp)
    async with serve_app(erp.app()) as url:
        erp.base_url = f"{url}/v2"
        yield erp
    assert erp.violations == []


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


class TripletexHarness(FakeHarness):
    kind = "tripletex"
    required_credential = "employee_token"
    customer, supplier, invoice = CUSTOMER, SUPPLIER, INVOICE

    def __init__(self, fake: FakeTripletex, http: aiohttp.ClientSession) -> None:
        self.fake, self.http = fake, http

    def make(
        self, settings: dict[str, str] | None = None, credentials: dict[str, str] | None = None
    ) -> TripletexProvider:
        spec = ConnectionSpec(
            client_id="acme",
            kind="tripletex",
            base_url=self.fake.base_url,
            settings={**SETTINGS, **(settings or {})},
            credentials={**CREDENTIALS, **(credentials or {})},
        )
        return TripletexProvider(spec, self.http)

    async def count(self, entity: Entity) -> int:
        # An invoice is an order first: none may be written when the invoice cannot be.
        return self.fake.writes["order"] if entity is Entity.invoice else len(self.fake.objects(entity.value))

    async def fail_next_429(self, retry_after: int) -> None:
        self.fake.fail_next(1, 429, reset=retry_after)

    def writes(self) -> list[str]:
        return [r for r in self.fake.requests if not r.startswith("GET") and "/token/" not in r]

    def secrets(self) -> list[str]:
        return [CONSUMER_TOKEN, EMPLOYEE_TOKEN]

    def token_requests(self) -> int:
        return self.fake.sessions_created

    async def our_webhook_author(self, provider: TripletexProvider, pushed: PushResult) -> str | None:
        headers, body = self.fake.callback("customer.create", "customer", int(str(pushed.external_id)), "s3")
        [inbound] = parse_webhook(headers, body, secret="s3")
        return inbound.author


@pytest.fixture
def erp(fake: FakeTripletex, http: aiohttp.ClientSession) -> TripletexHarness:
    return TripletexHarness(fake, http)


@pytest.fixture
def make(erp: TripletexHarness) -> Make:
    def build(
        settings: dict[str, str] | None = None, credentials: dict[str, str] | None = None
    ) -> TripletexProvider:
        if credentials is not None:  # these tests give the whole set
            credentials = {name: credentials.get(name, "") for name in CREDENTIALS}
        return erp.make(settings, credentials)

    return build


class TestTripletexContract(ProviderContract):
    pass


async def with_customer(provider: TripletexProvider) -> None:
    await provider.push(change(CUSTOMER))


# -- customers, suppliers, projects ---------------------------------------------------------------


async def test_create_customer_maps_fields_and_reports_identity(fake: FakeTripletex, make: Make) -> None:
    result = await make().push(change(CUSTOMER))

    [stored] = fake.objects("customer")
    assert (result.outcome, result.external_id, result.version) == ("created", str(stored["id"]), "0")
    assert result.author == str(API_EMPLOYEE_ID)
    assert result.content_hash and len(result.content_hash) == 64
    assert stored["customerNumber"] == 1001 and stored["organizationNumber"] == "999888777"
    assert stored["postalAddress"]["country"] == {"id": 161}


async def test_create_supplier_and_project(fake: FakeTripletex, make: Make) -> None:
    provider = make()
    await with_customer(provider)
    supplier = await provider.push(change(SUPPLIER))
    project = await provider.push(change(PROJECT))

    assert supplier.outcome == project.outcome == "created"
    assert fake.objects("supplier")[0]["postalAddress"]["country"] == {"id": 200}
    [stored] = fake.objects("project")
    assert stored["customer"] == {"id": fake.objects("customer")[0]["id"]}
    assert stored["projectManager"] == {"id": 11}


async def test_update_with_known_id_sends_version(fake: FakeTripletex, make: Make) -> None:
    provider = make()
    created = await provider.push(change(CUSTOMER))
    renamed = CUSTOMER.model_copy(update={"name": "Acme Holding AS", "email": None})
    updated = await provider.push(change(renamed, Action.updated, known_external_id=created.external_id))

    [stored] = fake.objects("customer")
    assert (updated.outcome, updated.external_id, updated.version) == ("updated", created.external_id, "1")
    assert stored["name"] == "Acme Holding AS" and stored["email"] == ""
    assert updated.content_hash != created.content_hash


async def test_redelivery_without_known_id_writes_by_put(fake: FakeTripletex, make: Make) -> None:
    await make().push(change(CUSTOMER))
    again = await make().push(change(CUSTOMER))
    assert again.outcome == "updated" and fake.writes["customer"] == 2


async def test_known_id_gone_falls_back_to_number_lookup(fake: FakeTripletex, make: Make) -> None:
    existing = fake.add("customer", {"name": "Acme", "customerNumber": 1001})
    result = await make().push(change(CUSTOMER, Action.updated, known_external_id="999999"))

    assert (result.outcome, result.external_id) == ("updated", str(existing["id"]))
    assert len(fake.objects("customer")) == 1


async def test_edit_conflict_rereads_and_retries_once(fake: FakeTripletex, make: Make) -> None:
    provider = make()
    created = await provider.push(change(CUSTOMER))
    fake.conflict_next_puts(1)
    result = await provider.push(change(CUSTOMER, Action.updated, known_external_id=created.external_id))
    assert result.outcome == "updated" and result.version == "2"

    fake.conflict_next_puts(2)
    with pytest.raises(TransientError, match="edited in Tripletex"):
        await provider.push(change(CUSTOMER, Action.updated, known_external_id=created.external_id))


async def test_an_object_deleted_between_lookup_and_put_is_transient(fake: FakeTripletex, make: Make) -> None:
    provider = make()
    created = await provider.push(change(CUSTOMER))
    fake.fail_next(1, 404, on="PUT /customer")  # a user deleted it just before our PUT
    with pytest.raises(TransientError, match="deleted in Tripletex while we wrote it"):
        await provider.push(change(CUSTOMER, Action.updated, known_external_id=created.external_id))

    assert created.external_id is not None
    fake.user_delete("customer", int(created.external_id))
    again = await provider.push(change(CUSTOMER, Action.updated, known_external_id=created.external_id))
    assert again.outcome == "created", "the next attempt looks again: CW's change re-creates it"


async def test_delete_customer_then_again(fake: FakeTripletex, make: Make) -> None:
    provider = make()
    created = await provider.push(change(CUSTOMER))
    deleted = await provider.push(change(CUSTOMER, Action.deleted, known_external_id=created.external_id))
    again = await provider.push(change(CUSTOMER, Action.deleted, known_external_id=created.external_id))

    assert (deleted.outcome, deleted.external_id) == ("deleted", created.external_id)
    assert again.outcome == "unchanged" and fake.objects("customer") == []


async def test_delete_project_found_by_number(fake: FakeTripletex, make: Make) -> None:
    provider = make()
    await with_customer(provider)
    await provider.push(change(PROJECT))
    result = await provider.push(change(PROJECT, Action.deleted))
    assert result.outcome == "deleted" and fake.objects("project") == []


# -- mapping errors ---------------------------------------------------------------------------------


async def test_project_without_manager_setting_is_mapping_error(make: Make) -> None:
    provider = make({"project_manager_id": ""})
    await with_customer(provider)
    with pytest.raises(MappingError, match="project_manager_id"):
        await provider.push(change(PROJECT))


async def test_non_numeric_customer_number_is_mapping_error(make: Make) -> None:
    with pytest.raises(MappingError, match="'C-1001' is not a whole number"):
        await make().push(change(CUSTOMER.model_copy(update={"number": "C-1001"})))


# -- invoices -----------------------------------------------------------------------------------------


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


# -- limits, errors, auth -------------------------------------------------------------------------


async def test_429_carries_reset_and_closes_the_window(fake: FakeTripletex, make: Make) -> None:
    provider = make()
    fake.fail_next(1, 429, reset=17)
    with pytest.raises(TransientError) as caught:
        await provider.push(change(CUSTOMER))
    assert caught.value.retry_after == 17.0

    sent = len(fake.requests)
    with pytest.raises(TransientError, match="rate limit used up") as again:
        await provider.push(change(SUPPLIER))
    assert again.value.retry_after is not None and 16 < again.value.retry_after <= 17
    assert len(fake.requests) == sent


async def test_remaining_zero_on_an_error_response_closes_the_window(fake: FakeTripletex, make: Make) -> None:
    provider = make()
    await provider.push(change(CUSTOMER))
    fake.rate_remaining = 0  # on the failure only: the headers are fixed when it is injected
    fake.fail_next(1, 422, on="POST /supplier", reset=40, fields={"name": "Ugyldig"})
    fake.rate_remaining = 100
    with pytest.raises(ProviderRejected):
        await provider.push(change(SUPPLIER))
    sent = len(fake.requests)
    with pytest.raises(TransientError, match="rate limit used up"):
        await provider.push(change(CUSTOMER, Action.updated))
    assert len(fake.requests) == sent


async def test_429_without_reset_header_falls_back_to_default(fake: FakeTripletex, make: Make) -> None:
    fake.fail_next(1, 429, reset=None)
    with pytest.raises(TransientError) as caught:
        await make().push(change(CUSTOMER))
    assert caught.value.retry_after == 5.0


async def test_exhausted_window_is_not_spent_on_a_certain_429(fake: FakeTripletex, make: Make) -> None:
    provider = make()
    await provider.push(change(CUSTOMER))
    fake.rate_remaining, fake.rate_reset = 0, 40
    await provider.check()  # one request, answered with "0 remaining, reset in 40 s"
    sent = len(fake.requests)
    with pytest.raises(TransientError, match="rate limit used up") as caught:
        await provider.push(change(SUPPLIER))
    assert caught.value.retry_after is not None and 0 < caught.value.retry_after <= 40
    assert len(fake.requests) == sent


async def test_server_error_is_transient(fake: FakeTripletex, make: Make) -> None:
    fake.fail_next(1, 503)
    with pytest.raises(TransientError, match="HTTP 503"):
        await make().push(change(CUSTOMER))


async def test_validation_error_carries_tripletex_message(fake: FakeTripletex, make: Make) -> None:
    provider = make()
    fake.fail_next(1, 422, on="POST /customer", fields={"organizationNumber": "Ugyldig organisasjonsnummer"})
    with pytest.raises(ProviderRejected, match=r"Injected failure; organizationNumber: Ugyldig.*requestId"):
        await provider.push(change(CUSTOMER))


async def test_token_is_replaced_a_day_before_it_expires(fake: FakeTripletex, make: Make) -> None:
    provider = make()
    await provider.check()
    provider._client.today = lambda: fake.today + dt.timedelta(days=1)
    await provider.check()
    # session, whoAmI, session, whoAmI: the second token came before any 401 could
    assert fake.sessions_created == 2 and len(fake.requests) == 4


async def test_revoked_credentials_fail_with_operator_advice(fake: FakeTripletex, make: Make) -> None:
    provider = make()
    await provider.push(change(CUSTOMER))
    fake.revoke()
    with pytest.raises(
        AuthenticationFailed, match=r"employee_token.*cwi connections set acme tripletex --credential"
    ):
        await provider.push(change(SUPPLIER))


async def test_check_ok(fake: FakeTripletex, make: Make) -> None:
    summary = await make().check()
    assert summary == (
        f"tripletex at {fake.base_url}: authenticated as employee 7 (API Integration) of company 42; "
        "changes we make carry author 7"
    )


async def test_api_employee_id_overrides_the_discovered_identity(fake: FakeTripletex, make: Make) -> None:
    provider = make({"api_employee_id": "12"})
    result = await provider.push(change(CUSTOMER))
    assert await provider.identity() == "12" == result.author
    assert not any("whoAmI" in request for request in fake.requests)


async def test_project_whose_customer_is_missing_waits(fake: FakeTripletex, make: Make) -> None:
    with pytest.raises(DependencyMissing, match="customer number 1001 is not in Tripletex yet") as caught:
        await make().push(change(PROJECT))
    assert caught.value.retry_after == 60.0 and fake.objects("project") == []


async def test_check_with_bad_credentials(make: Make) -> None:
    with pytest.raises(AuthenticationFailed, match="Invalid consumer or employee token"):
        await make(credentials={"consumer_token": "wrong", "employee_token": "wrong"}).check()


async def test_preview_names_what_push_would_look_up(fake: FakeTripletex, make: Make) -> None:
    provider = make()
    [post, charge] = provider.preview(change(INVOICE))
    [create] = provider.preview(change(CUSTOMER))

    assert post.method == "POST" and post.url == f"{fake.base_url}/order"
    assert charge.url.endswith(":invoice?invoiceDate=2024-05-02&sendToCustomer=false")
    assert create.json["postalAddress"]["country"] == {"id": "<id of country NO>"}


async def test_webhook_for_our_own_write_names_us_and_the_version(fake: FakeTripletex, make: Make) -> None:
    result = await make().push(change(CUSTOMER))
    headers, body = fake.callback("customer.create", "customer", int(str(result.external_id)), "s3cret")

    [inbound] = parse_webhook(headers, body, secret="s3cret")
    assert (inbound.external_id, inbound.version, inbound.author) == (result.external_id, "0", result.author)


# -- the spec as oracle -------------------------------------------------------------------------------


def test_every_mapped_body_validates_against_the_spec() -> None:
    spec = load_spec(SPEC)
    settings = SettingsReader("acme", "tripletex", {**SETTINGS, "department_id": "4"})
    countries = {"NO": 161, "SE": 200}
    customer = mapping.customer_payload(CUSTOMER, settings, countries)
    bodies = [
        ("POST", "/customer", customer),
        ("PUT", "/customer/5", {**customer, "id": 5, "version": 3}),
        ("POST", "/supplier", mapping.supplier_payload(SUPPLIER, countries)),
        (
            "POST",
            "/project",
            mapping.project_payload(
                PROJECT.model_copy(update={"end_date": dt.date(2024, 9, 1)}), settings, 9
            ),
        ),
        ("POST", "/order", mapping.order_payload(INVOICE, settings, 9)),
        ("PUT", "/order/8", {**mapping.order_payload(INVOICE, settings, 9), "id": 8, "version": 0}),
    ]
    for method, path, body in bodies:
        spec.validate_request(method, path, body)


async def test_no_request_in_this_module_violated_the_spec(fake: FakeTripletex, make: Make) -> None:
    provider = make()
    for record in (CUSTOMER, SUPPLIER, PROJECT, INVOICE):
        await provider.push(change(record))
        await provider.push(change(record, Action.updated))
    await provider.push(change(PROJECT, Action.deleted))
    await provider.check()

    assert len(fake.requests) > 20
    assert [v for f in ALL_FAKES for v in f.violations] == []
