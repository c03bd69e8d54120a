"""The Visma.net provider against the stateful fake over real HTTP (token endpoint included): the
shared provider contract (``TestVismaNetContract``), then what only Visma.net does with customers,
suppliers and projects, and its errors, limits and auth. Invoices and the spec as oracle:
``test_visma_net_provider_invoices.py``; what they share: ``visma_net_rig.py``."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import aiohttp
import pytest

from contracts import Action, Entity, Project, Supplier
from providers.base import content_hash
from providers.errors import (
    AuthenticationFailed,
    DependencyMissing,
    NotSupported,
    ProviderRejected,
    TransientError,
)
from providers.settings import SettingsReader
from providers.visma_net import mapping
from providers.visma_net.provider import VismaNetProvider
from tests.fakes.visma_net import API_SUBJECT, FakeVismaNet
from tests.integration.provider_contract import ProviderContract, change, http
from tests.integration.visma_net_rig import connection, customer, deletion, erp, fake, invoice, provider

__all__ = ["erp", "fake", "http"]  # the fixtures


class TestVismaNetContract(ProviderContract):
    pass


# customers, suppliers, projects


async def test_create_customer(fake: FakeVismaNet, http: aiohttp.ClientSession) -> None:
    result = await provider(fake, http).push(change(customer()))

    assert (result.outcome, result.external_id, result.author) == ("created", "10001", None)
    settings = SettingsReader.of(connection(fake))
    assert result.content_hash == content_hash(mapping.customer_body(customer(), settings))
    stored = fake.customers["10001"]
    assert (stored["name"], stored["corporateId"], stored["mainAddress"]["city"]) == (
        "Acme AS",
        "999888777",
        "Oslo",
    )


async def test_update_known_customer(fake: FakeVismaNet, http: aiohttp.ClientSession) -> None:
    erp = provider(fake, http)
    await erp.push(change(customer()))

    result = await erp.push(change(customer(name="Acme Holding AS"), Action.updated, known="10001"))

    assert (result.outcome, result.external_id) == ("updated", "10001")
    assert fake.customers["10001"]["name"] == "Acme Holding AS"
    assert len(fake.customers) == 1


async def test_known_id_gone_falls_back_to_lookup(fake: FakeVismaNet, http: aiohttp.ClientSession) -> None:
    result = await provider(fake, http).push(change(customer(), Action.updated, known="OLD-1"))

    assert (result.outcome, result.external_id) == ("created", "10001")
    assert list(fake.customers) == ["10001"]


async def test_supplier_version_is_its_last_modified_time(
    fake: FakeVismaNet, http: aiohttp.ClientSession
) -> None:
    supplier = Supplier(id="s-1", number="20001", name="Betong AS", email="post@betong.no")
    erp = provider(fake, http)
    created = await erp.push(change(supplier))
    updated = await erp.push(change(supplier, Action.updated, known="20001"))

    assert (created.outcome, updated.outcome) == ("created", "updated")
    assert created.version and updated.version and created.version != updated.version
    assert updated.version == fake.stores["supplier"].records["20001"]["lastModifiedDateTime"]
    assert fake.stores["supplier"].records["20001"]["mainContact"]["email"] == "post@betong.no"


async def test_a_users_edit_between_our_write_and_its_read_back_is_not_claimed_as_ours(
    fake: FakeVismaNet, http: aiohttp.ClientSession
) -> None:
    """Visma answers a write without the record, so the provider reads its version back. A user's
    edit in between makes that version the user's: claimed as ours, the user's webhook would be
    taken for our echo and the edit never reach CW."""
    erp = provider(fake, http)
    created = await erp.push(change(customer()))
    assert created.version == fake.customers["10001"]["lastModifiedDateTime"]  # nobody in between

    fake.after_api_write = lambda kind, key: fake.user_update(kind, key, name="Edited in Visma")
    updated = await erp.push(change(customer(name="Acme Holding AS"), Action.updated, known="10001"))

    assert fake.customers["10001"]["name"] == "Edited in Visma"
    assert (updated.outcome, updated.external_id) == ("updated", "10001")
    assert updated.version is None, "the user's version was claimed as the one we wrote"


async def test_project_created_and_updated(fake: FakeVismaNet, http: aiohttp.ClientSession) -> None:
    project = Project(
        id="p-1", number="PRJ-9", name="New school", customer_id="cw-10001", start_date=dt.date(2024, 3, 1)
    )
    erp = provider(fake, http)
    created = await erp.push(change(project))
    updated = await erp.push(change(project.model_copy(update={"name": "New school, phase 2"})))

    assert (created.outcome, created.external_id, updated.outcome) == ("created", "PRJ-9", "updated")
    stored = fake.stores["project"].records["PRJ-9"]
    assert (stored["description"], stored["template"]) == ("New school, phase 2", "STANDARD")


@pytest.mark.parametrize("entity", [Entity.customer, Entity.supplier, Entity.project])
async def test_master_data_cannot_be_deleted(
    fake: FakeVismaNet, http: aiohttp.ClientSession, entity: Entity
) -> None:
    with pytest.raises(NotSupported, match="inactive"):
        await provider(fake, http).push(deletion(entity, "x-1", known="10001"))
    assert fake.requests == []


# errors, limits, auth


async def test_429_retry_after_beyond_the_wait_is_handed_to_the_retry(
    fake: FakeVismaNet, http: aiohttp.ClientSession
) -> None:
    erp = provider(fake, http)
    fake.fail_next(1, 429, retry_after="7")
    with pytest.raises(TransientError) as caught:
        await erp.push(change(customer()))
    assert caught.value.retry_after == 7

    sent = len(fake.requests)
    with pytest.raises(TransientError, match="rate limit used up"):
        await erp.push(change(customer()))
    assert len(fake.requests) == sent


async def test_429_without_retry_after_uses_the_reset_header(
    fake: FakeVismaNet, http: aiohttp.ClientSession
) -> None:
    fake.fail_next(1, 429)
    with pytest.raises(TransientError) as caught:
        await provider(fake, http).push(change(customer()))
    assert caught.value.retry_after == 30


async def test_503_is_transient(fake: FakeVismaNet, http: aiohttp.ClientSession) -> None:
    fake.fail_next(1, 503, message="Service is under maintenance")
    with pytest.raises(TransientError, match="under maintenance"):
        await provider(fake, http).push(change(customer()))


@pytest.mark.parametrize("expires_in", [None, "soon", "NaN", -5, 0])
async def test_token_is_cached(fake: FakeVismaNet, http: aiohttp.ClientSession, expires_in: object) -> None:
    """Also when the answer's expires_in is no lifetime: taken at the documented hour."""
    fake.expires_in_answer = expires_in
    erp = provider(fake, http)
    await erp.push(change(customer("10001")))
    await erp.push(change(customer("10002")))
    assert fake.token_requests == 1


async def test_revoked_credentials_fail_authentication(
    fake: FakeVismaNet, http: aiohttp.ClientSession
) -> None:
    erp = provider(fake, http)
    await erp.push(change(customer()))
    fake.revoke_credentials()

    with pytest.raises(AuthenticationFailed, match="invalid_client") as caught:
        await erp.push(change(customer(), Action.updated, known="10001"))
    assert "cwi connections set acme visma_net --credential client_secret=" in str(caught.value)


async def test_403_names_the_scopes(fake: FakeVismaNet, http: aiohttp.ClientSession) -> None:
    fake.fail_next(1, 403, message="Insufficient scope")
    with pytest.raises(AuthenticationFailed, match=r"Insufficient scope.*check setting scopes"):
        await provider(fake, http).push(change(customer()))


async def test_vendor_validation_error_carries_visma_message(
    fake: FakeVismaNet, http: aiohttp.ClientSession
) -> None:
    fake.seed_customer("10001")
    with pytest.raises(ProviderRejected, match="VAT code '99' was not found") as caught:
        await provider(fake, http, **{"vat_code.25": "99"}).push(change(invoice()))
    assert "message id 400_" in str(caught.value)


async def test_invoice_or_project_whose_customer_is_missing_waits(
    fake: FakeVismaNet, http: aiohttp.ClientSession
) -> None:
    erp = provider(fake, http)
    with pytest.raises(DependencyMissing, match=r"customer 99999 is not in Visma\.net yet"):
        await erp.push(change(invoice(customer_number="99999")))
    project = Project(
        id="p-9",
        number="P9",
        name="X",
        customer_id="c",
        customer_number="99999",
        start_date=dt.date(2024, 1, 1),
    )
    with pytest.raises(DependencyMissing, match="customer 99999"):
        await erp.push(change(project))
    assert fake.invoices == {} and fake.stores["project"].records == {}


async def test_identity_is_the_subject_of_our_token(fake: FakeVismaNet, http: aiohttp.ClientSession) -> None:
    assert await provider(fake, http).identity() == API_SUBJECT


async def test_injected_422_is_rejected_with_its_message(
    fake: FakeVismaNet, http: aiohttp.ClientSession
) -> None:
    fake.fail_next(1, 422, message="Field 'name' is too long")
    with pytest.raises(ProviderRejected, match="HTTP 422: Field 'name' is too long"):
        await provider(fake, http).push(change(customer()))


async def test_vat_rates_compare_as_numbers(fake: FakeVismaNet) -> None:
    settings = SettingsReader.of(connection(fake, credentials=None, **{"vat_code.25.00": "3"}))
    assert settings.vat_code(Decimal("25")) == "3"
    assert settings.vat_code(Decimal("0.0")) == "5"


async def test_check_ok_and_with_bad_credentials(fake: FakeVismaNet, http: aiohttp.ClientSession) -> None:
    summary = await provider(fake, http).check()
    assert summary == (
        f"visma_net at {fake.base_url}: authenticated as API client cw-integration for tenant tenant-42; "
        f"changes we make carry author {API_SUBJECT}"
    )

    with pytest.raises(AuthenticationFailed, match="Check credentials client_id and client_secret"):
        await VismaNetProvider(connection(fake, secret="wrong"), http).check()


async def test_preview_shows_the_invoice_steps(fake: FakeVismaNet, http: aiohttp.ClientSession) -> None:
    requests = provider(fake, http, release_invoices="true").preview(change(invoice()))

    assert [(r.method, r.url.removeprefix(fake.base_url)) for r in requests] == [
        ("POST", "/v2/customerinvoice"),
        ("POST", "/v1/customerinvoice/<number of the new invoice>/action/release"),
    ]
    assert requests[0].json["externalReference"] == {"value": "inv-1"}
    assert fake.token_requests == 0
