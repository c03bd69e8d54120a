"""The generic REST sandbox ERP's own behaviour, spoken to directly over HTTP on 127.0.0.1: the
field it names in a bad body, the headers it requires, its GET, its control API, a fail rate, and
records kept in SQLite across restarts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from providers.generic_rest.sandbox import SandboxServer
from tests.integration.generic_rest_rig import (
    CUSTOMER,
    INVOICE,
    PROJECT,
    TOKEN,
    ProviderFactory,
    change,
    control,
    http,
    make_provider,
    raw,
    sandbox,
    wire,
)

__all__ = ["http", "make_provider", "sandbox", "wire"]  # the fixtures


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
