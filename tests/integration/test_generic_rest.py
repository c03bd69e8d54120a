"""The generic REST provider against the real sandbox ERP on 127.0.0.1, and the sandbox's own rules."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from contracts import Action, Address, Customer, CWRecord, Entity, Invoice, InvoiceLine, Project, Supplier
from providers.base import ConnectionSpec, OutboundChange, PushResult, content_hash
from providers.errors import AuthenticationFailed, MappingError, ProviderRejected, TransientError
from providers.generic_rest import GenericRestProvider
from providers.generic_rest.sandbox import SandboxServer
from tests.integration.provider_contract import Harness, ProviderContract
from tests.openapi import load_spec

TOKEN = "sandbox-token-123"
CUSTOMER = Customer(
    id="c-1",
    number="1001",
    name="Acme AS",
    org_number="923609016",
    address=Address(street="Storgata 1", postal_code="0155", city="Oslo", country="NO"),
)
SUPPLIER = Supplier(id="s-1", number="2001", name="Bolt AS", email="post@bolt.no")
PROJECT = Project(id="p-1", number="P-7", name="Roof", customer_id="c-1", start_date=dt.date(2025, 3, 1))
INVOICE = Invoice(
    id="i-1",
    number="10001",
    customer_id="c-1",
    customer_number="1001",
    invoice_date=dt.date(2025, 3, 31),
    due_date=dt.date(2025, 4, 14),
    currency="NOK",
    lines=[
        InvoiceLine(
            description="Labour", quantity=Decimal("7.5"), unit_price=Decimal("950.00"), vat_rate=Decimal(25)
        ),
        InvoiceLine(
            description="Nails", quantity=Decimal(1), unit_price=Decimal("0.10"), vat_rate=Decimal(0)
        ),
    ],
    project_id="p-1",
)


@dataclass
class SentRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""
    at: float = field(default_factory=time.monotonic)


@dataclass
class Wire:
    """Every request the provider's session put on the wire, as sent."""

    sent: list[SentRequest] = field(default_factory=list)

    def trace(self) -> aiohttp.TraceConfig:
        config = aiohttp.TraceConfig()

        async def start(_: Any, ctx: SimpleNamespace, params: aiohttp.TraceRequestStartParams) -> None:
            ctx.request = SentRequest(params.method, params.url.raw_path, dict(params.headers))
            self.sent.append(ctx.request)

        async def chunk(_: Any, ctx: SimpleNamespace, params: aiohttp.TraceRequestChunkSentParams) -> None:
            ctx.request.body += params.chunk

        config.on_request_start.append(start)
        config.on_request_chunk_sent.append(chunk)
        return config


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxServer]:
    async with SandboxServer(token=TOKEN) as server:
        yield server


@pytest.fixture
def wire() -> Wire:
    return Wire()


@pytest.fixture
async def http(wire: Wire) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(trace_configs=[wire.trace()]) as session:
        yield session


ProviderFactory = Callable[..., GenericRestProvider]


@pytest.fixture
def make_provider(sandbox: SandboxServer, http: aiohttp.ClientSession) -> ProviderFactory:
    def make(
        *, token: str | None = TOKEN, base_url: str | None = None, **settings: str
    ) -> GenericRestProvider:
        spec = ConnectionSpec(
            client_id="acme",
            kind="generic_rest",
            base_url=base_url or sandbox.base_url,
            settings=settings,
            credentials={} if token is None else {"token": token},
        )
        return GenericRestProvider(spec, http)

    return make


class GenericRestHarness(Harness):
    kind = "generic_rest"
    required_credential = "token"
    has_tokens = has_vat_codes = looks_up_parents = reads_records = False
    customer, supplier, invoice = CUSTOMER, SUPPLIER, INVOICE

    def __init__(self, sandbox: SandboxServer, http: aiohttp.ClientSession, wire: Wire) -> None:
        self.sandbox, self.http, self.wire = sandbox, http, wire

    def make(
        self, settings: dict[str, str] | None = None, credentials: dict[str, str] | None = None
    ) -> GenericRestProvider:
        creds = {"token": TOKEN, **(credentials or {})}
        spec = ConnectionSpec("acme", "generic_rest", self.sandbox.base_url, settings or {}, creds)
        return GenericRestProvider(spec, self.http)

    async def count(self, entity: Entity) -> int:
        records = await control(self.http, self.sandbox, "GET", "records")
        return sum(1 for r in records if r["entity"] == entity.value and not r["deleted"])

    async def fail_next_429(self, retry_after: int) -> None:
        await control(self.http, self.sandbox, "POST", "fail-next", status=429, retry_after=retry_after)

    def sent(self) -> list[float]:
        return [r.at for r in self.wire.sent if "/_sandbox/" not in r.path]

    def writes(self) -> list[str]:
        return [
            f"{r.method} {r.path}" for r in self.wire.sent if r.method != "GET" and "/_sandbox/" not in r.path
        ]

    def secrets(self) -> list[str]:
        return [TOKEN]

    async def our_webhook_author(self, provider: GenericRestProvider, pushed: PushResult) -> str | None:
        raise NotImplementedError("the generic REST identity is discovered by GET {base}/v1/_ping")


@pytest.fixture
def erp(sandbox: SandboxServer, http: aiohttp.ClientSession, wire: Wire) -> GenericRestHarness:
    return GenericRestHarness(sandbox, http, wire)


class TestGenericRestContract(ProviderContract):
    pass


def change(record: CWRecord, action: Action = Action.created, *, key: str = "env-1") -> OutboundChange:
    entity = Entity(type(record).__name__.lower())
    body = None if action is Action.deleted else record
    return OutboundChange(idempotency_key=key, entity=entity, action=action, cw_id=record.id, record=body)


async def control(
    http: aiohttp.ClientSession, sandbox: SandboxServer, method: str, path: str, **body: Any
) -> Any:
    async with http.request(method, f"{sandbox.base_url}/_sandbox/{path}", json=body or None) as resp:
        assert resp.status < 300, await resp.text()
        return await resp.json() if resp.status != 204 else None


# Outcomes.


async def test_create_then_update_bumps_the_version(make_provider: ProviderFactory) -> None:
    provider = make_provider()
    created = await provider.push(change(CUSTOMER, key="env-1"))
    updated = await provider.push(change(CUSTOMER, Action.updated, key="env-2"))
    assert (created.outcome, created.external_id, created.version) == ("created", "GR-customer-1", "1")
    assert (updated.outcome, updated.external_id, updated.version) == ("updated", "GR-customer-1", "2")
    assert created.content_hash == content_hash(CUSTOMER.model_dump(mode="json"))


async def test_delete_and_delete_again_are_both_deleted(
    make_provider: ProviderFactory, http: aiohttp.ClientSession, sandbox: SandboxServer, wire: Wire
) -> None:
    provider = make_provider()
    await provider.push(change(CUSTOMER, key="env-1"))
    first = await provider.push(change(CUSTOMER, Action.deleted, key="env-2"))
    again = await provider.push(change(CUSTOMER, Action.deleted, key="env-3"))
    assert (first.outcome, again.outcome) == ("deleted", "deleted")
    # The second DELETE's 404 counts as gone once the probe proved the interface is there.
    assert [(r.method, r.path.split("/")[2]) for r in wire.sent] == [
        ("PUT", "customer"),
        ("DELETE", "customer"),
        ("DELETE", "customer"),
        ("GET", "_ping"),
    ]
    stats = await control(http, sandbox, "GET", "stats")
    assert stats["deletes"] == 1


async def test_a_redelivery_with_the_same_key_writes_once(
    make_provider: ProviderFactory, http: aiohttp.ClientSession, sandbox: SandboxServer
) -> None:
    provider = make_provider()
    first = await provider.push(change(CUSTOMER, key="env-1"))
    second = await provider.push(change(CUSTOMER, key="env-1"))
    assert second == first
    stats = await control(http, sandbox, "GET", "stats")
    assert stats["requests"] == 2
    assert stats["writes"] == {"customer/c-1": 1}


async def test_a_deleted_record_put_again_is_created_anew(make_provider: ProviderFactory) -> None:
    provider = make_provider()
    await provider.push(change(CUSTOMER, key="env-1"))
    await provider.push(change(CUSTOMER, Action.deleted, key="env-2"))
    again = await provider.push(change(CUSTOMER, key="env-3"))
    assert (again.outcome, again.external_id, again.version) == ("created", "GR-customer-1", "3")


# Errors.


async def test_429_is_transient_with_retry_after(
    make_provider: ProviderFactory, http: aiohttp.ClientSession, sandbox: SandboxServer
) -> None:
    await control(http, sandbox, "POST", "fail-next", status=429, retry_after=7, error="slow down")
    with pytest.raises(TransientError, match="slow down") as caught:
        await make_provider().push(change(CUSTOMER))
    assert caught.value.retry_after == 7.0


async def test_503_is_transient_and_the_retry_succeeds(
    make_provider: ProviderFactory, http: aiohttp.ClientSession, sandbox: SandboxServer
) -> None:
    await control(http, sandbox, "POST", "fail-next", status=503, count=1)
    provider = make_provider()
    with pytest.raises(TransientError, match="HTTP 503") as caught:
        await provider.push(change(CUSTOMER))
    assert caught.value.retry_after is None
    assert (await provider.push(change(CUSTOMER))).outcome == "created"


@pytest.mark.parametrize(
    ("record", "text"),
    [
        (
            CUSTOMER.model_copy(update={"org_number": "923609017"}),
            "org_number: '923609017' is not a Norwegian",
        ),
        (SUPPLIER.model_copy(update={"org_number": "12345678"}), "org_number: '12345678' is not a Norwegian"),
        (INVOICE.model_copy(update={"currency": "JPY"}), "currency: this ERP invoices only in"),
    ],
    ids=["customer-org-number", "supplier-org-number", "invoice-currency"],
)
async def test_a_business_rule_is_rejected_with_the_sandbox_text(
    make_provider: ProviderFactory, record: CWRecord, text: str
) -> None:
    with pytest.raises(ProviderRejected, match="HTTP 422") as caught:
        await make_provider().push(change(record))
    assert text in str(caught.value)


async def test_a_wrong_token_is_authentication_failed(make_provider: ProviderFactory) -> None:
    with pytest.raises(AuthenticationFailed, match="HTTP 401") as caught:
        await make_provider(token="wrong").push(change(CUSTOMER))
    assert "cwi connections set acme generic_rest --credential token=" in str(caught.value)
    assert "wrong" not in str(caught.value)


async def test_latency_above_the_timeout_is_transient(http: aiohttp.ClientSession) -> None:
    async with SandboxServer(token=TOKEN, latency_ms=1000) as slow:
        spec = ConnectionSpec(
            "acme",
            "generic_rest",
            slow.base_url,
            settings={"timeout_s": "0.05"},
            credentials={"token": TOKEN},
        )
        with pytest.raises(TransientError, match="timed out"):
            await GenericRestProvider(spec, http).push(change(CUSTOMER))


async def test_an_unreachable_erp_is_transient(make_provider: ProviderFactory) -> None:
    with pytest.raises(TransientError):
        await make_provider(base_url="http://127.0.0.1:9").push(change(CUSTOMER))


@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_a_bad_timeout_setting_is_a_mapping_error(make_provider: ProviderFactory, value: str) -> None:
    with pytest.raises(MappingError, match="timeout_s"):
        make_provider(timeout_s=value)


async def test_a_record_of_the_wrong_entity_is_a_mapping_error(make_provider: ProviderFactory) -> None:
    mismatched = OutboundChange("env-1", Entity.invoice, Action.created, CUSTOMER.id, CUSTOMER)
    with pytest.raises(MappingError, match="invoice change carries a Customer"):
        await make_provider().push(mismatched)


# The contract: what goes on the wire.


async def test_every_request_matches_the_interface_document(
    make_provider: ProviderFactory, wire: Wire
) -> None:
    spec = load_spec("generic_rest.openapi.json")
    provider = make_provider()
    records: list[CWRecord] = [CUSTOMER, SUPPLIER, PROJECT, INVOICE]
    for n, record in enumerate(records):
        for action in Action:
            result = await provider.push(change(record, action, key=f"env-{n}-{action.value}"))
            assert result.outcome == action.value
    assert len(wire.sent) == 12
    for request in wire.sent:
        body = json.loads(request.body) if request.body else None
        spec.validate_request(request.method, request.path, body)
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
        assert request.headers["Idempotency-Key"].startswith("env-")


async def test_a_cw_id_with_a_slash_stays_one_path_segment(
    make_provider: ProviderFactory, wire: Wire
) -> None:
    record = CUSTOMER.model_copy(update={"id": "acme/c 1"})
    result = await make_provider().push(change(record))
    assert result.outcome == "created"
    assert wire.sent[0].path == "/v1/customer/acme%2Fc%201"


async def test_check_reports_an_authenticated_connection(
    make_provider: ProviderFactory, sandbox: SandboxServer
) -> None:
    assert await make_provider().check() == (
        f"generic_rest at {sandbox.base_url}: authenticated as cwi (interface v1)"
    )


async def test_check_with_a_bad_token_fails_authentication(make_provider: ProviderFactory) -> None:
    with pytest.raises(AuthenticationFailed, match="HTTP 401"):
        await make_provider(token="wrong").check()


def test_preview_shows_the_request_with_the_token_redacted(make_provider: ProviderFactory) -> None:
    provider = make_provider()
    [put] = provider.preview(change(INVOICE))
    [delete] = provider.preview(change(INVOICE, Action.deleted))
    assert (put.method, put.url.rsplit("/", 3)[1:]) == ("PUT", ["v1", "invoice", "i-1"])
    assert put.headers["Authorization"] == "***"
    assert put.json == INVOICE.model_dump(mode="json")
    assert (delete.method, delete.json) == ("DELETE", None)
    assert TOKEN not in repr([put, delete])


# The sandbox's own behaviour, spoken to directly.


async def raw(
    http: aiohttp.ClientSession,
    sandbox: SandboxServer,
    method: str,
    path: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    sent = {"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": "k-1"} if headers is None else headers
    async with http.request(method, sandbox.base_url + path, json=body, headers=sent) as resp:
        return resp.status, (await resp.json() if resp.content_length else None)


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({**CUSTOMER.model_dump(mode="json"), "nickname": "x"}, 422, "body: Additional properties"),
        ({**CUSTOMER.model_dump(mode="json"), "name": ""}, 422, "name: '' should be non-empty"),
        (
            {**CUSTOMER.model_dump(mode="json"), "org_number": 923609016},
            422,
            "org_number: 923609016 is not of type",
        ),
        ({**CUSTOMER.model_dump(mode="json"), "id": "c-2"}, 422, "id: 'c-2' differs from the cw_id"),
        ({"id": "c-1", "number": "1"}, 422, "name: is required"),
    ],
    ids=["unknown-field", "empty-name", "number-for-string", "id-mismatch", "missing-field"],
)
async def test_the_sandbox_names_the_bad_field(
    http: aiohttp.ClientSession, sandbox: SandboxServer, body: Any, status: int, error: str
) -> None:
    answer, problem = await raw(http, sandbox, "PUT", "/v1/customer/c-1", body)
    assert answer == status
    assert problem["error"].startswith(error), problem


async def test_the_sandbox_refuses_a_request_without_idempotency_key(
    http: aiohttp.ClientSession, sandbox: SandboxServer
) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    status, body = await raw(http, sandbox, "DELETE", "/v1/customer/c-1", headers=headers)
    assert (status, body) == (400, {"error": "Idempotency-Key: header is required"})
    assert (await raw(http, sandbox, "GET", "/v1/customer/c-1", headers=headers))[0] == 404  # GET needs none


async def test_the_sandbox_refuses_an_unknown_entity_and_bad_json(
    http: aiohttp.ClientSession, sandbox: SandboxServer
) -> None:
    status, body = await raw(http, sandbox, "PUT", "/v1/order/o-1", {"id": "o-1"})
    assert (status, body["error"]) == (
        404,
        "no such path: /v1/order/o-1 (interface v1: customer, supplier, project, invoice)",
    )
    headers = {
        "Authorization": f"Bearer {TOKEN}",
        "Idempotency-Key": "k-2",
        "Content-Type": "application/json",
    }
    async with http.put(f"{sandbox.base_url}/v1/customer/c-1", data=b"{nope", headers=headers) as resp:
        assert (resp.status, await resp.json()) == (400, {"error": "body: not valid JSON"})


async def test_the_sandbox_answers_get_with_version_and_data(
    make_provider: ProviderFactory, http: aiohttp.ClientSession, sandbox: SandboxServer
) -> None:
    await make_provider().push(change(INVOICE))
    status, body = await raw(http, sandbox, "GET", "/v1/invoice/i-1")
    assert (status, body) == (
        200,
        {"external_id": "GR-invoice-1", "version": 1, "data": INVOICE.model_dump(mode="json")},
    )
    assert (await raw(http, sandbox, "GET", "/v1/invoice/i-2"))[0] == 404


async def test_the_control_api_lists_and_resets(
    make_provider: ProviderFactory, http: aiohttp.ClientSession, sandbox: SandboxServer
) -> None:
    await make_provider().push(change(PROJECT))
    [record] = await control(http, sandbox, "GET", "records")
    assert (record["entity"], record["cw_id"], record["version"], record["deleted"]) == (
        "project",
        "p-1",
        1,
        False,
    )
    await control(http, sandbox, "POST", "reset")
    assert await control(http, sandbox, "GET", "records") == []
    assert await control(http, sandbox, "GET", "stats") == {
        "requests": 0,
        "writes": {},
        "creates": 0,
        "updates": 0,
        "deletes": 0,
    }


async def test_a_fail_rate_of_one_answers_503(http: aiohttp.ClientSession) -> None:
    async with SandboxServer(token=TOKEN, fail_rate=1.0, seed=1) as flaky:
        status, body = await raw(http, flaky, "GET", "/v1/customer/c-1")
    assert (status, body) == (503, {"error": "sandbox: simulated outage (fail_rate 1)"})


async def test_a_sqlite_sandbox_keeps_records_across_restarts(
    http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    db_path = str(tmp_path / "sandbox.db")
    async with SandboxServer(token=TOKEN, db_path=db_path) as first:
        assert (await raw(http, first, "PUT", "/v1/customer/c-1", CUSTOMER.model_dump(mode="json")))[0] == 201
    async with SandboxServer(token=TOKEN, db_path=db_path) as second:
        replayed = await raw(http, second, "PUT", "/v1/customer/c-1", CUSTOMER.model_dump(mode="json"))
        status, body = await raw(http, second, "GET", "/v1/customer/c-1")
    assert replayed == (201, {"external_id": "GR-customer-1", "version": 1})
    assert (status, body["version"], body["data"]) == (200, 1, CUSTOMER.model_dump(mode="json"))
