"""The Tripletex provider against the fake Tripletex, over real HTTP on 127.0.0.1: the shared
provider contract (``TestTripletexContract``), then what only Tripletex does with customers,
suppliers and projects, and the spec as oracle. Invoices: ``test_tripletex_provider_invoices.py``;
rate limits, errors and auth: ``test_tripletex_provider_limits.py``; what they share:
``tripletex_rig.py``."""

from __future__ import annotations

import datetime as dt

import pytest

from contracts import Action
from providers.errors import MappingError, TransientError
from providers.settings import SettingsReader
from providers.tripletex import mapping
from tests.fakes.tripletex import API_EMPLOYEE_ID, SPEC, FakeTripletex
from tests.integration.provider_contract import (
    ProviderContract,
    change,
    deleted_between_lookup_and_put,
    http,
)
from tests.integration.tripletex_rig import (
    ALL_FAKES,
    CREDENTIALS,
    CUSTOMER,
    INVOICE,
    LINES,
    OSLO,
    PROJECT,
    SETTINGS,
    SUPPLIER,
    Make,
    TripletexHarness,
    erp,
    fake,
    make,
    with_customer,
)
from tests.openapi import load_spec

__all__ = [  # the fixtures, and what other modules import from here (``change`` above all)
    "CREDENTIALS",
    "CUSTOMER",
    "INVOICE",
    "LINES",
    "OSLO",
    "PROJECT",
    "SETTINGS",
    "SUPPLIER",
    "TripletexHarness",
    "change",
    "erp",
    "fake",
    "http",
    "make",
]


class TestTripletexContract(ProviderContract):
    pass


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
    updated = await provider.push(change(renamed, Action.updated, known=created.external_id))

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
    result = await make().push(change(CUSTOMER, Action.updated, known="999999"))

    assert (result.outcome, result.external_id) == ("updated", str(existing["id"]))
    assert len(fake.objects("customer")) == 1


async def test_edit_conflict_rereads_and_retries_once(fake: FakeTripletex, make: Make) -> None:
    provider = make()
    created = await provider.push(change(CUSTOMER))
    fake.conflict_next_puts(1)
    result = await provider.push(change(CUSTOMER, Action.updated, known=created.external_id))
    assert result.outcome == "updated" and result.version == "2"

    fake.conflict_next_puts(2)
    with pytest.raises(TransientError, match="edited in Tripletex"):
        await provider.push(change(CUSTOMER, Action.updated, known=created.external_id))


async def test_an_object_deleted_between_lookup_and_put_is_transient(fake: FakeTripletex, make: Make) -> None:
    await deleted_between_lookup_and_put(
        make(), fake, CUSTOMER, CUSTOMER, kind="customer", vendor="Tripletex"
    )


async def test_delete_customer_then_again(fake: FakeTripletex, make: Make) -> None:
    provider = make()
    created = await provider.push(change(CUSTOMER))
    deleted = await provider.push(change(CUSTOMER, Action.deleted, known=created.external_id))
    again = await provider.push(change(CUSTOMER, Action.deleted, known=created.external_id))

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
