"""The CW port's HTTP adapter against the fake CW over real HTTP; its requests checked against the
documents in contracts/ (cw_write.openapi.json, cw_query.graphql)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from graphql import build_schema, parse, validate
from graphql.language import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    OperationDefinitionNode,
    SelectionSetNode,
)

from contracts import Customer, Entity, Invoice, Project, Record, Supplier
from providers.errors import PermanentError, TransientError
from tests.openapi import load_spec
from worker.cw.http import LIST_OPERATIONS, OPERATIONS, QUERY_DOCUMENT, HttpCW
from worker.dev.cw_sandbox import CWServer
from worker.logging import redactor

API_KEY = "cw-test-api-key"

# CW's Query API schema as far as the worker reads it: enough to validate our documents.
SCHEMA = build_schema(
    """
    type Address { street: String! postal_code: String! city: String! country: String! }
    type Customer { id: ID! number: String! name: String! org_number: String email: String phone: String
                    address: Address }
    type Supplier { id: ID! number: String! name: String! org_number: String email: String address: Address }
    type Project { id: ID! number: String! name: String! customer_id: ID! customer_number: String
                   start_date: String! end_date: String }
    type InvoiceLine { description: String! quantity: String! unit_price: String! vat_rate: String!
                       account: String product_number: String }
    type Invoice { id: ID! number: String! customer_id: ID! customer_number: String! project_id: ID
                   project_number: String invoice_date: String! due_date: String! currency: String!
                   reference: String lines: [InvoiceLine!]! }
    scalar DateTime
    type CustomerChange { id: ID! sequence: Int! updated_at: DateTime! deleted: Boolean! record: Customer }
    type SupplierChange { id: ID! sequence: Int! updated_at: DateTime! deleted: Boolean! record: Supplier }
    type ProjectChange { id: ID! sequence: Int! updated_at: DateTime! deleted: Boolean! record: Project }
    type InvoiceChange { id: ID! sequence: Int! updated_at: DateTime! deleted: Boolean! record: Invoice }
    type CustomerPage { items: [CustomerChange!]! next_cursor: String! has_more: Boolean! }
    type SupplierPage { items: [SupplierChange!]! next_cursor: String! has_more: Boolean! }
    type ProjectPage { items: [ProjectChange!]! next_cursor: String! has_more: Boolean! }
    type InvoicePage { items: [InvoiceChange!]! next_cursor: String! has_more: Boolean! }
    type Query { customer(id: ID!): Customer supplier(id: ID!): Supplier project(id: ID!): Project
                 invoice(id: ID!): Invoice
                 customerChanges(changedSince: DateTime, cursor: String, first: Int!): CustomerPage!
                 supplierChanges(changedSince: DateTime, cursor: String, first: Int!): SupplierPage!
                 projectChanges(changedSince: DateTime, cursor: String, first: Int!): ProjectPage!
                 invoiceChanges(changedSince: DateTime, cursor: String, first: Int!): InvoicePage! }
    """
)
MODELS: dict[Entity, type[Record]] = {
    Entity.customer: Customer,
    Entity.supplier: Supplier,
    Entity.project: Project,
    Entity.invoice: Invoice,
}


@dataclass
class Recorded:
    requests: list[tuple[str, str, dict[str, str], Any]] = field(default_factory=list)


@pytest.fixture
async def cw_server() -> AsyncIterator[tuple[CWServer, Recorded]]:
    recorded = Recorded()
    server = CWServer(api_key=API_KEY)

    @web.middleware
    async def record(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> Any:
        body = await request.json() if request.can_read_body else None
        recorded.requests.append((request.method, request.path, dict(request.headers), body))
        return await handler(request)

    server.app.middlewares.append(record)
    async with server:
        yield server, recorded


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def adapter(http: aiohttp.ClientSession, server: CWServer, key: str = API_KEY) -> HttpCW:
    return HttpCW(http, graphql_url=server.graphql_url, write_url=server.write_url, api_key=key)


FIELDS = {"number": "10001", "name": "Acme AS", "email": "post@acme.no"}


async def test_create_update_query_delete_round_trip(
    cw_server: tuple[CWServer, Recorded], http: aiohttp.ClientSession
) -> None:
    server, _ = cw_server
    cw = adapter(http, server)
    created = await cw.create("acme", Entity.customer, FIELDS, key="k1")
    cw_id = created.cw_id
    assert created.version == 1, "CW's version after the write (the sequence of its event)"
    updated = await cw.update("acme", Entity.customer, cw_id, {**FIELDS, "name": "Acme Holding AS"}, key="k2")
    assert updated is not None and updated.version == 2
    record = await cw.fetch("acme", Entity.customer, cw_id, key="k3")
    assert record is not None and record["name"] == "Acme Holding AS" and record["id"] == cw_id
    assert await cw.fetch("globex", Entity.customer, cw_id, key="k4") is None, "clients are separate"
    assert await cw.delete("acme", Entity.customer, cw_id, key="k5")
    assert not await cw.delete("acme", Entity.customer, cw_id, key="k6"), "already gone"
    assert not await cw.update("acme", Entity.customer, cw_id, FIELDS, key="k7")
    assert await cw.fetch("acme", Entity.customer, cw_id, key="k8") is None


async def test_the_same_idempotency_key_creates_once(
    cw_server: tuple[CWServer, Recorded], http: aiohttp.ClientSession
) -> None:
    server, _ = cw_server
    cw = adapter(http, server)
    first = await cw.create("acme", Entity.customer, FIELDS, key="same")
    assert await cw.create("acme", Entity.customer, FIELDS, key="same") == first
    assert server.cw.stats.creates == 1


async def test_every_request_is_one_the_documents_in_contracts_allow(
    cw_server: tuple[CWServer, Recorded], http: aiohttp.ClientSession
) -> None:
    server, recorded = cw_server
    cw = adapter(http, server)
    invoice = {
        "number": "1",
        "customer_id": "c1",
        "customer_number": "10001",
        "invoice_date": "2026-11-01",
        "due_date": "2026-11-15",
        "currency": "NOK",
        "lines": [{"description": "Work", "quantity": "2", "unit_price": "100.00", "vat_rate": "25"}],
    }
    inv = (await cw.create("acme", Entity.invoice, invoice, key="i1")).cw_id
    await cw.update("acme", Entity.invoice, inv, {**invoice, "reference": "PO 1"}, key="i2")
    cus = (await cw.create("acme", Entity.customer, FIELDS, key="c1")).cw_id
    for entity in Entity:
        await cw.fetch("acme", entity, inv, key=f"q-{entity.value}")
    await cw.delete("acme", Entity.customer, cus, key="d1")

    spec = load_spec("cw_write.openapi.json")
    for method, path, headers, body in recorded.requests:
        assert headers["Authorization"] == f"Bearer {API_KEY}"
        assert headers["X-CW-Client-Id"] == "acme" and headers["Idempotency-Key"]
        if path == "/graphql":
            _check_graphql(body)
            continue
        write_path = path.removeprefix("/write")
        operation = spec.operation(method, write_path)
        required = {p["$ref"].rsplit("/", 1)[1] for p in operation["parameters"]}
        assert {"ClientId", "IdempotencyKey"} <= required
        spec.validate_request(method, write_path, body)
    assert len(recorded.requests) == 8


def _check_graphql(body: dict[str, Any]) -> None:
    assert body["query"] == QUERY_DOCUMENT
    if body["operationName"] in LIST_OPERATIONS.values():
        assert set(body["variables"]) == {"changedSince", "cursor", "first"}
        return
    assert body["operationName"] in OPERATIONS.values() and set(body["variables"]) == {"id"}


def _selected(selection: SelectionSetNode, fragments: dict[str, FragmentDefinitionNode]) -> dict[str, Any]:
    """Field name → its own selection (None for a leaf), fragment spreads resolved."""
    found: dict[str, Any] = {}
    for node in selection.selections:
        if isinstance(node, FragmentSpreadNode):
            found |= _selected(fragments[node.name.value].selection_set, fragments)
        elif isinstance(node, FieldNode):
            found[node.name.value] = node.selection_set and _selected(node.selection_set, fragments)
    return found


def test_the_graphql_documents_parse_validate_and_select_every_record_field() -> None:
    document = parse(files("contracts").joinpath("cw_query.graphql").read_text())
    assert validate(SCHEMA, document) == []
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    operations = {
        d.name.value: d for d in document.definitions if isinstance(d, OperationDefinitionNode) and d.name
    }
    assert set(operations) == {*OPERATIONS.values(), *LIST_OPERATIONS.values()}
    for entity, name in OPERATIONS.items():
        (root,) = _selected(operations[name].selection_set, fragments).items()
        assert root[0] == entity.value
        assert set(root[1]) == set(MODELS[entity].model_fields), f"{name} must select every field"
        listing = _selected(operations[LIST_OPERATIONS[entity]].selection_set, fragments)
        items = listing[f"{entity.value}Changes"]["items"]
        assert set(items) == {"id", "sequence", "updated_at", "deleted", "record"}
        assert items["record"] == root[1], "a listing reads the same fields as a query"


async def test_the_listing_pages_in_change_order_with_deletions_and_a_resumable_cursor(
    cw_server: tuple[CWServer, Recorded], http: aiohttp.ClientSession
) -> None:
    server, recorded = cw_server
    cw = adapter(http, server)
    ids = [
        (await cw.create("acme", Entity.customer, {**FIELDS, "number": str(n)}, key=f"c{n}")).cw_id
        for n in range(3)
    ]
    await cw.create("globex", Entity.customer, FIELDS, key="other client")
    await cw.update("acme", Entity.customer, ids[0], {**FIELDS, "number": "0", "name": "Renamed"}, key="u")
    await cw.delete("acme", Entity.customer, ids[1], key="d")

    async def read(since: Any, cursor: str | None) -> tuple[list[Any], str]:
        items: list[Any] = []
        has_more = True
        while has_more:
            page = await cw.list_changes(
                "acme", Entity.customer, changed_since=since, cursor=cursor, first=2, key="l"
            )
            items += page.items
            cursor, has_more = page.next_cursor, page.has_more
        assert cursor is not None
        return items, cursor

    items, cursor = await read(None, None)
    assert [(i.cw_id, i.sequence, i.deleted) for i in items] == [
        (ids[2], 1, False),
        (ids[0], 2, False),
        (ids[1], 2, True),
    ]
    assert items[1].record is not None and items[1].record["name"] == "Renamed"
    assert (await read(None, cursor))[0] == [], "nothing changed after the last page"
    await cw.update("acme", Entity.customer, ids[2], {**FIELDS, "number": "2", "name": "Later"}, key="u2")
    later, _ = await read(None, cursor)
    assert [i.cw_id for i in later] == [ids[2]]
    assert items[0].updated_at is not None
    since, _ = await read(items[2].updated_at, None)
    assert [i.cw_id for i in since] == [ids[1], ids[2]]
    for _, path, _, body in recorded.requests:
        if path == "/graphql":
            _check_graphql(body)


def test_the_write_api_document_names_every_record_field_but_the_id() -> None:
    spec = load_spec("cw_write.openapi.json")
    for entity, model in MODELS.items():
        schema = spec.request_schema("POST", f"/v1/{entity.value}")
        assert schema is not None
        properties = spec.resolve(schema["$ref"])["properties"]
        assert set(properties) == set(model.model_fields) - {"id"}


async def test_a_rejected_record_is_permanent_with_cws_own_text(
    cw_server: tuple[CWServer, Recorded], http: aiohttp.ClientSession
) -> None:
    server, _ = cw_server
    with pytest.raises(PermanentError, match=r"HTTP 422: .*name"):
        await adapter(http, server).create("acme", Entity.customer, {"number": "1"}, key="bad")


async def test_a_wrong_api_key_is_permanent_and_never_logged(
    cw_server: tuple[CWServer, Recorded], http: aiohttp.ClientSession
) -> None:
    server, _ = cw_server
    with pytest.raises(PermanentError, match=r"HTTP 401.*CWI_CW_API_KEY"):
        await adapter(http, server, key="not-the-key").create("acme", Entity.customer, FIELDS, key="k")
    assert redactor.scrub("key not-the-key here") == "key *** here"


@pytest.mark.parametrize("status", [500, 503, 408, 429])
async def test_server_errors_timeouts_and_throttling_are_transient(
    status: int, http: aiohttp.ClientSession
) -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.json_response({"error": "busy"}, status=status, headers={"Retry-After": "2"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        cw = HttpCW(http, graphql_url=f"{url}/graphql", write_url=url, api_key=API_KEY)
        with pytest.raises(TransientError, match=f"HTTP {status}: busy") as caught:
            await cw.update("acme", Entity.customer, "c1", FIELDS, key="k")
        assert caught.value.retry_after == 2
        with pytest.raises(TransientError):
            await cw.fetch("acme", Entity.customer, "c1", key="k")
    finally:
        await runner.cleanup()


async def test_an_unreachable_cw_is_transient(http: aiohttp.ClientSession) -> None:
    cw = HttpCW(
        http, graphql_url="http://127.0.0.1:9/graphql", write_url="http://127.0.0.1:9", api_key=API_KEY
    )
    with pytest.raises(TransientError):
        await cw.create("acme", Entity.customer, FIELDS, key="k")
