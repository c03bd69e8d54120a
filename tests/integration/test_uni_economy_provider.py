"""UniEconomyProvider against the stateful Uni fake over real HTTP on 127.0.0.1: the shared provider
contract (``TestUniEconomyContract``), then what only Uni Economy does."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from contracts import Action, Address, Customer, Entity, Invoice, InvoiceLine, Project, Supplier
from providers.base import ConnectionSpec, OutboundChange, PushResult, content_hash
from providers.errors import (
    AuthenticationFailed,
    DependencyMissing,
    MappingError,
    NotSupported,
    ProviderRejected,
    TransientError,
)
from providers.http import HttpResponse
from providers.settings import SettingsReader
from providers.uni_economy import UniEconomyProvider
from providers.uni_economy import mapping as m
from providers.uni_economy.client import describe_error
from providers.uni_economy.webhooks import parse_webhook
from tests.fakes.uni_economy import API_USER, INVOICED, FakeUni, uni_spec
from tests.integration.provider_contract import FakeHarness, ProviderContract
from tests.openapi import SpecViolation

CLIENT_ID = "cw-integration"
ALL_REQUESTS: list[tuple[str, str]] = []
ALL_VIOLATIONS: list[str] = []


@pytest.fixture(scope="session")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def cert(key: rsa.RSAPrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cw-integration")])
    now = dt.datetime.now(dt.UTC)
    builder = x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
    builder = builder.serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
    return builder.sign(key, hashes.SHA256())


def _pem(key: rsa.RSAPrivateKey) -> str:
    fmt = serialization.PrivateFormat.PKCS8
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode()


@pytest.fixture
async def fake(key: rsa.RSAPrivateKey, cert: x509.Certificate) -> AsyncIterator[FakeUni]:
    uni = FakeUni()
    uni.register_client(CLIENT_ID, key.public_key(), cert)
    async with uni.serve():
        yield uni
    ALL_REQUESTS.extend(uni.requests)
    ALL_VIOLATIONS.extend(uni.violations)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


MakeProvider = Callable[..., UniEconomyProvider]


@pytest.fixture
def make(
    fake: FakeUni, http: aiohttp.ClientSession, key: rsa.RSAPrivateKey, cert: x509.Certificate
) -> MakeProvider:
    def build(
        settings: dict[str, str] | None = None, credentials: dict[str, str] | None = None
    ) -> UniEconomyProvider:
        base_settings = {
            "company_key": fake.company_key,
            "token_url": fake.token_url,
            "vat_code.25": "3",
            "vat_code.0": "6",
            "revenue_account": "3000",
        }
        creds = {
            "client_id": CLIENT_ID,
            "private_key_pem": _pem(key),
            "certificate_pem": cert.public_bytes(serialization.Encoding.PEM).decode(),
        }
        spec = ConnectionSpec(
            "acme",
            "uni_economy",
            fake.base_url,
            {**base_settings, **(settings or {})},
            {**creds, **(credentials or {})},
        )
        return UniEconomyProvider(spec, http)

    return build


@pytest.fixture
def provider(make: MakeProvider) -> UniEconomyProvider:
    return make()


class UniHarness(FakeHarness):
    kind = "uni_economy"
    required_credential = "client_id"

    def __init__(self, fake: FakeUni, make: MakeProvider, secrets: list[str]) -> None:
        self.fake, self.make_provider, self._secrets = fake, make, secrets
        self.customer, self.supplier, self.invoice = CUSTOMER, SUPPLIER, invoice()

    def make(
        self, settings: dict[str, str] | None = None, credentials: dict[str, str] | None = None
    ) -> UniEconomyProvider:
        return self.make_provider(settings, credentials)

    async def count(self, entity: Entity) -> int:
        return len(self.fake.entities(m.KINDS[entity].collection))

    async def fail_next_429(self, retry_after: int) -> None:
        self.fake.fail_next(1, 429, retry_after=str(retry_after))

    def writes(self) -> list[str]:
        return [f"{method} {path}" for method, path in self.fake.requests if method != "GET"]

    def secrets(self) -> list[str]:
        return self._secrets

    def listen(self) -> None:
        self.fake.add_event_plan("http://127.0.0.1:9/nobody-listens", self.hook_secret)

    async def our_webhook_author(self, provider: UniEconomyProvider, pushed: PushResult) -> str | None:
        return await self.delivered_author(parse_webhook, pushed)


@pytest.fixture
def erp(fake: FakeUni, make: MakeProvider, key: rsa.RSAPrivateKey) -> UniHarness:
    return UniHarness(fake, make, [_pem(key).splitlines()[1], fake.company_key])


class TestUniEconomyContract(ProviderContract):
    pass


ADDRESS = Address(street="Storgata 1", postal_code="0155", city="Oslo", country="NO")
CUSTOMER = Customer(
    id="c-1", number="1001", name="Acme AS", org_number="999888777", email="post@acme.no", address=ADDRESS
)
SUPPLIER = Supplier(id="s-1", number="2001", name="Rør og Rør AS", email="faktura@ror.no")
PROJECT = Project(
    id="p-1", number="P-17", name="Kontorbygg", customer_id="c-1", start_date=dt.date(2024, 3, 1)
)


def invoice(cw_id: str = "i-1", *lines: InvoiceLine, currency: str = "NOK") -> Invoice:
    default = InvoiceLine(
        description="Rørlegging", quantity=Decimal("2"), unit_price=Decimal("950.50"), vat_rate=Decimal(25)
    )
    return Invoice(
        id=cw_id,
        number=f"INV-{cw_id}",
        customer_id="c-1",
        customer_number="1001",
        invoice_date=dt.date(2024, 5, 2),
        due_date=dt.date(2024, 5, 16),
        currency=currency,
        lines=list(lines) or [default],
        reference="Ola Nordmann",
    )


def change(
    record: Any, action: Action = Action.created, known: str | None = None, **kw: Any
) -> OutboundChange:
    entity = Entity(type(record).__name__.lower())
    return OutboundChange(f"k-{record.id}-{action}", entity, action, record.id, record, known, **kw)


async def test_create_customer_maps_fields_and_reports_author(
    provider: UniEconomyProvider, fake: FakeUni
) -> None:
    result = await provider.push(change(CUSTOMER))
    [stored] = fake.entities("customers")
    assert result.outcome == "created"
    assert result.external_id == str(stored["ID"])
    assert result.author == API_USER and result.version == stored["CreatedAt"]
    assert result.content_hash == content_hash(m.customer_payload(CUSTOMER))
    assert stored["CustomerNumber"] == 1001 and stored["OrgNumber"] == "999888777"
    assert stored["Info"]["Name"] == "Acme AS"
    assert stored["Info"]["DefaultEmail"]["EmailAddress"] == "post@acme.no"
    assert stored["Info"]["InvoiceAddress"]["City"] == "Oslo"


async def test_update_by_known_id_keeps_nested_objects(provider: UniEconomyProvider, fake: FakeUni) -> None:
    created = await provider.push(change(CUSTOMER))
    info_id = fake.entities("customers")[0]["Info"]["ID"]
    renamed = CUSTOMER.model_copy(update={"name": "Acme Holding AS"})
    result = await provider.push(change(renamed, Action.updated, known=created.external_id))
    [stored] = fake.entities("customers")
    assert result.outcome == "updated" and result.external_id == created.external_id
    assert stored["Info"]["Name"] == "Acme Holding AS"
    assert stored["Info"]["ID"] == info_id  # updated in place, not a second BusinessRelation
    assert result.version == stored["UpdatedAt"] and result.author == API_USER


@pytest.mark.parametrize("record", [CUSTOMER, SUPPLIER, PROJECT], ids=["customer", "supplier", "project"])
async def test_redelivery_does_not_duplicate(
    provider: UniEconomyProvider, fake: FakeUni, record: Any
) -> None:
    first = await provider.push(change(record))
    second = await provider.push(change(record))
    collection = m.KINDS[Entity(type(record).__name__.lower())].collection
    assert (first.outcome, second.outcome) == ("created", "unchanged")
    assert second.external_id == first.external_id
    assert len(fake.entities(collection)) == 1 and fake.writes[collection] == 1


async def test_recovering_after_write_reached_uni(provider: UniEconomyProvider, fake: FakeUni) -> None:
    await provider.push(change(CUSTOMER))
    first = await provider.push(change(invoice("i-rec")))
    again = await provider.push(change(invoice("i-rec"), recovering=True))
    assert again.outcome == "unchanged" and again.external_id == first.external_id
    assert len(fake.entities("invoices")) == 1


async def test_an_entity_deleted_between_lookup_and_put_is_transient(
    provider: UniEconomyProvider, fake: FakeUni
) -> None:
    created = await provider.push(change(CUSTOMER))
    renamed = CUSTOMER.model_copy(update={"name": "Acme Holding AS"})
    fake.fail_next(1, 404, on="PUT /customers")  # a user deleted it just before our PUT
    with pytest.raises(TransientError, match="deleted in Uni Economy while we wrote it"):
        await provider.push(change(renamed, Action.updated, known=created.external_id))

    assert created.external_id is not None
    fake.user_delete("customers", int(created.external_id))
    again = await provider.push(change(renamed, Action.updated, known=created.external_id))
    assert again.outcome == "created", "the next attempt looks again: CW's change re-creates it"


async def test_stale_known_id_falls_back_to_natural_key(provider: UniEconomyProvider, fake: FakeUni) -> None:
    created = await provider.push(change(SUPPLIER))
    renamed = SUPPLIER.model_copy(update={"name": "Rør og Rør Vest AS"})
    result = await provider.push(change(renamed, Action.updated, known="999999"))
    assert result.outcome == "updated" and result.external_id == created.external_id
    assert [s["Info"]["Name"] for s in fake.entities("suppliers")] == ["Rør og Rør Vest AS"]


async def test_429_retry_after_beyond_the_wait_is_handed_to_the_retry(
    provider: UniEconomyProvider, fake: FakeUni
) -> None:
    fake.fail_next(1, 429, retry_after="7")
    with pytest.raises(TransientError) as caught:
        await provider.push(change(CUSTOMER))
    assert caught.value.retry_after == 7
    sent = len(fake.requests)
    with pytest.raises(TransientError, match="rate limit used up"):
        await provider.push(change(CUSTOMER))
    assert len(fake.requests) == sent


async def test_503_is_transient(provider: UniEconomyProvider, fake: FakeUni) -> None:
    fake.fail_next(1, 503, message="Service Unavailable")
    with pytest.raises(TransientError, match="Service Unavailable"):
        await provider.push(change(CUSTOMER))


async def test_revoked_credentials_fail_authentication(provider: UniEconomyProvider, fake: FakeUni) -> None:
    await provider.push(change(CUSTOMER))
    fake.revoke(CLIENT_ID)
    with pytest.raises(AuthenticationFailed, match="cwi connections set acme uni_economy") as caught:
        await provider.push(change(SUPPLIER))
    assert "client_id" in str(caught.value)


async def test_vendor_validation_error_carries_its_message(
    provider: UniEconomyProvider, fake: FakeUni
) -> None:
    fake.fail_next(1, 400, message="Kundenummer 1001 er allerede i bruk")
    with pytest.raises(ProviderRejected, match="Kundenummer 1001 er allerede i bruk"):
        await provider.push(change(CUSTOMER))


async def test_vat_rates_compare_as_decimals(make: MakeProvider, fake: FakeUni) -> None:
    provider = make({"vat_code.25": "", "vat_code.25.00": "3"})
    await provider.push(change(CUSTOMER))
    await provider.push(change(invoice("i-dec")))
    assert fake.entities("invoices")[0]["Items"][0]["VatTypeID"] == 1


async def test_missing_company_key_names_the_setting(make: MakeProvider) -> None:
    with pytest.raises(MappingError, match="setting company_key"):
        await make({"company_key": ""}).push(change(CUSTOMER))


async def test_wrong_company_key_names_the_setting(make: MakeProvider) -> None:
    with pytest.raises(AuthenticationFailed, match=r"Unknown CompanyKey.*check setting company_key"):
        await make({"company_key": "someone-elses-company"}).push(change(CUSTOMER))


@pytest.mark.parametrize(
    ("credentials", "named"),
    [
        ({"client_id": ""}, "client_id"),
        (
            {"private_key_pem": "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----"},
            "private_key_pem",
        ),
        ({"private_key_pem": "", "pkcs12": "not base64!"}, "pkcs12"),
        ({"private_key_pem": ""}, "private_key_pem"),
    ],
    ids=["no-client-id", "bad-pem", "bad-pkcs12", "no-key"],
)
async def test_bad_credentials_name_the_credential(
    make: MakeProvider, credentials: dict[str, str], named: str
) -> None:
    with pytest.raises(AuthenticationFailed, match=named):
        await make(credentials=credentials).push(change(CUSTOMER))


async def test_pkcs12_credentials_sign_with_certificate_thumbprint(
    make: MakeProvider, fake: FakeUni, key: rsa.RSAPrivateKey, cert: x509.Certificate
) -> None:
    bundle = pkcs12.serialize_key_and_certificates(
        b"cw", key, cert, None, serialization.BestAvailableEncryption(b"s3cret")
    )
    creds = {"private_key_pem": "", "pkcs12": base64.b64encode(bundle).decode(), "pkcs12_password": "s3cret"}
    assert (await make(credentials=creds).push(change(CUSTOMER))).outcome == "created"
    assert fake.assertion_headers[-1]["kid"] == cert.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303
    with pytest.raises(AuthenticationFailed, match="pkcs12_password"):
        await make(credentials={**creds, "pkcs12_password": "wrong"}).push(change(CUSTOMER))


async def test_assertion_signed_by_another_key_is_refused(make: MakeProvider) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(AuthenticationFailed, match="refused client_id cw-integration"):
        await make(credentials={"private_key_pem": _pem(stranger), "certificate_pem": ""}).push(
            change(CUSTOMER)
        )


@pytest.mark.parametrize("record", [CUSTOMER, SUPPLIER, PROJECT], ids=["customer", "supplier", "project"])
async def test_delete(provider: UniEconomyProvider, fake: FakeUni, record: Any) -> None:
    created = await provider.push(change(record))
    deleted = await provider.push(change(record, Action.deleted, known=created.external_id))
    again = await provider.push(change(record, Action.deleted, known=created.external_id))
    collection = m.KINDS[Entity(type(record).__name__.lower())].collection
    assert (deleted.outcome, deleted.external_id) == ("deleted", created.external_id)
    assert again.outcome == "unchanged"
    assert fake.entities(collection) == []


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


async def test_check(provider: UniEconomyProvider, make: MakeProvider, fake: FakeUni) -> None:
    summary = await provider.check()
    assert summary == (
        f"uni_economy at {fake.base_url}/api/biz: authenticated as CW Integration; "
        f"changes we make carry author {API_USER}"
    )
    with pytest.raises(AuthenticationFailed, match="client_id unknown-client"):
        await make(credentials={"client_id": "unknown-client"}).check()


async def test_preview_names_what_push_would_look_up(make: MakeProvider, fake: FakeUni) -> None:
    provider = make({"finalise_invoices": "true"})
    [post, finalise] = provider.preview(change(invoice("i-pre")))
    [customer] = provider.preview(change(CUSTOMER))
    assert post.headers["CompanyKey"] == "***"
    assert (
        post.url == f"{fake.base_url}/api/biz/invoices"
        and post.json["CustomerID"] == "<ID of customer number 1001>"
    )
    assert finalise.url.endswith("/invoices/<ID of the new invoice>?action=invoice")
    assert customer.json == m.customer_payload(CUSTOMER)
    assert fake.requests == [] and fake.token_requests == 0


def test_describe_error_reads_every_known_shape() -> None:
    body = b'{"Message": "Validation failed", "Messages": [{"PropertyName": "Name", "Message": "required"}],'
    body += b' "ModelState": {"Customer.OrgNumber": ["invalid"]}}'
    text = describe_error(HttpResponse(400, {}, body))
    assert text == "Validation failed; Name: required; Customer.OrgNumber: invalid"
    assert describe_error(HttpResponse(500, {}, b"<html>")) is None


def _bodies() -> list[tuple[str, str, Any]]:
    ids = m.InvoiceIds(customer=1001, vat_types=[1, 4], accounts=[11, 12], currency=2)
    lines = [
        *invoice().lines,
        InvoiceLine(description="x", quantity=Decimal(1), unit_price=Decimal(1), vat_rate=Decimal(0)),
    ]
    draft = m.invoice_payload(
        invoice("i-b", *lines), ids, SettingsReader("acme", "uni_economy", {"department_id": "4"})
    )
    stored = {"ID": 5, "Items": [{"ID": 8}, {"ID": 9}, {"ID": 10}], "DefaultDimensions": {"ID": 3}}
    full = Customer(
        id="c", number="7", name="N", org_number="1", email="e@x.no", phone="+47 1", address=ADDRESS
    )
    return [
        ("POST", "/customers", m.customer_payload(full)),
        ("PUT", "/customers/5", m.with_ids(m.customer_payload(full), {"ID": 5, "Info": {"ID": 6}})),
        ("POST", "/suppliers", m.supplier_payload(SUPPLIER.model_copy(update={"address": ADDRESS}))),
        (
            "POST",
            "/projects",
            m.project_payload(PROJECT.model_copy(update={"end_date": dt.date(2025, 1, 1)})),
        ),
        ("POST", "/invoices", draft),
        ("PUT", "/invoices/5", m.with_ids(draft, stored)),
    ]


@pytest.mark.parametrize(("method", "path", "body"), _bodies(), ids=lambda v: v if isinstance(v, str) else "")
def test_mapped_bodies_validate_against_the_spec(method: str, path: str, body: Any) -> None:
    uni_spec().validate_request(method, path, body)


def test_spec_oracle_catches_a_bad_body() -> None:
    with pytest.raises(SpecViolation, match="CustomerNumber"):
        uni_spec().validate_request("POST", "/customers", {"CustomerNumber": "1001"})
    with pytest.raises(SpecViolation, match="InvoiceDate"):
        uni_spec().validate_request("POST", "/invoices", {"InvoiceDate": 20240502})


async def test_fake_records_spec_violations(
    fake: FakeUni, http: aiohttp.ClientSession, provider: UniEconomyProvider
) -> None:
    url = f"{fake.base_url}/api/biz/customers"
    async with http.post(url, json={"CustomerNumber": "x"}) as resp:
        assert resp.status == 401  # auth comes first; then the body is checked
    token = await provider._client.tokens.get()  # the test borrows the real auth flow
    headers = {"Authorization": f"Bearer {token}", "CompanyKey": fake.company_key}
    async with http.post(url, json={"CustomerNumber": "x"}, headers=headers) as resp:
        assert resp.status == 400
    assert len(fake.violations) == 1
    fake.violations.clear()  # deliberate: the module-wide check below is about the provider's requests


def test_no_spec_violations_in_any_request_of_this_module() -> None:
    methods = {method for method, _ in ALL_REQUESTS}
    assert {"GET", "POST", "PUT", "DELETE"} <= methods, "run the whole module: the other tests feed this one"
    assert ALL_VIOLATIONS == []
