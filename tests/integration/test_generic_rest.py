"""The generic REST provider against the real sandbox ERP on 127.0.0.1: the shared provider contract
(``TestGenericRestContract``), outcomes, errors, and what goes on the wire. The sandbox's own rules,
spoken to directly: ``test_generic_rest_sandbox.py``; what they share: ``generic_rest_rig.py``."""

from __future__ import annotations

import json

import aiohttp
import pytest

from contracts import Action, CWRecord, Entity
from providers.base import ConnectionSpec, OutboundChange, content_hash
from providers.errors import AuthenticationFailed, MappingError, ProviderRejected, TransientError
from providers.generic_rest import GenericRestProvider
from providers.generic_rest.sandbox import SandboxServer
from tests.integration.generic_rest_rig import (
    CUSTOMER,
    INVOICE,
    PROJECT,
    SUPPLIER,
    TOKEN,
    ProviderFactory,
    Wire,
    change,
    control,
    erp,
    http,
    make_provider,
    sandbox,
    wire,
)
from tests.integration.provider_contract import ProviderContract
from tests.openapi import load_spec

__all__ = ["erp", "http", "make_provider", "sandbox", "wire"]  # the fixtures


class TestGenericRestContract(ProviderContract):
    pass


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
