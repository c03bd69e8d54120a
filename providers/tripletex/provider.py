"""Tripletex as a CW provider: upserts by natural key, invoices through an order, no duplicates."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp

from contracts import Action, Customer, CWRecord, Entity, Invoice, Project, Supplier
from providers.base import (
    ConnectionSpec,
    ExternalRecord,
    OutboundChange,
    PreparedRequest,
    PushResult,
    content_hash,
)
from providers.catalogues import Reference
from providers.errors import DependencyMissing, MappingError, NotSupported, TransientError
from providers.http import HttpResponse
from providers.listing import DEFAULT_PAGE_SIZE, Listed, ListedPage
from providers.plan import Plan, placeholder
from providers.settings import SettingsReader
from providers.tripletex import listing, mapping
from providers.tripletex.client import TripletexClient, unwrap
from providers.tripletex.mapping import Payload, Ref
from providers.vendor import VendorProvider, record_of

ORDER_FIELDS = (
    "id,version,number,orderDate,reference,invoicesDueIn,invoicesDueInType,customer(id),"
    "orderLines(description,count,unitPriceExcludingVatCurrency,vatType(id))"
)
_SYNCED = ("customer", "supplier", "project")
WEBHOOK_EVENTS = (
    *(f"{subject}.{verb}" for subject in _SYNCED for verb in ("create", "update", "delete")),
    "invoice.charged",
)
API_EMPLOYEE_SETTING = "api_employee_id"
WEBHOOK_FIELDS = "*,version,changes"
"""Callbacks carry the record, its version and who changed it: enough to tell an echo without a fetch."""


@dataclass(frozen=True, slots=True)
class _Kind:
    """Where an entity lives in Tripletex and which list filter finds it by its CW number."""

    path: str
    key_param: str


_KINDS = {
    Entity.customer: _Kind("/customer", "customerAccountNumber"),
    Entity.supplier: _Kind("/supplier", "supplierNumber"),
    Entity.project: _Kind("/project", "number"),
}


def _numeric_id(external_id: str | None) -> str | None:
    return external_id if external_id and external_id.isdigit() else None


CATALOGUES = {
    "vat_codes": ("/ledger/vatType", "id"),
    "departments": ("/department", "id"),
    "employees": ("/employee", "id"),
    "currencies": ("/currency", "code"),
}


class TripletexProvider(VendorProvider):
    kind = "tripletex"
    readers = mapping.READERS
    references = (
        Reference("vat_code.<rate>", "vat_codes", "vatType id"),
        Reference("department_id", "departments", "department id"),
        Reference("project_manager_id", "employees", "employee id"),
        Reference("api_employee_id", "employees", "employee id"),
        Reference("currency", "currencies", "currency code"),
    )

    def __init__(self, spec: ConnectionSpec, http: aiohttp.ClientSession) -> None:
        super().__init__(spec, http)
        self._client = TripletexClient(spec, http)
        self._country_ids: dict[str, int] = {}

    async def _run(self, change: OutboundChange, plan: Plan) -> PushResult:
        settings = self.settings
        if change.entity is Entity.invoice:
            invoice = self._invoice_record(change)  # a delete is refused before any request
            return await self._push_invoice(invoice, settings, await self._author(plan), plan)
        author = await self._author(plan)
        kind = _KINDS[change.entity]
        if change.action is Action.deleted:
            return await self._delete(change, kind, author, plan)
        payload = await self._payload(change, settings, plan)
        found = await plan.existing(lambda: self._find(change, kind))
        if found is None:
            created = await self._write(plan, "POST", kind.path, payload, new=change.entity.value)
            return _result("created", created, payload, author)
        updated = await self._put_versioned(kind.path, found, payload)
        return _result("updated", updated, payload, author)

    async def _author(self, plan: Plan) -> str | None:
        author: str | None = await plan.reference("our identity", self.identity)
        return author

    async def _write(
        self,
        plan: Plan,
        method: str,
        path: str,
        body: Payload | None,
        *,
        new: str,
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """One write through the plan; a dry run answers with the id of the ``new`` object."""
        query = f"?{urlencode(params)}" if params else ""
        shown = PreparedRequest(
            method, f"{self._client.base_url}{path}{query}", self._client.preview_headers(), body
        )
        answer = {"id": placeholder(f"id of the new {new}"), "version": None}
        return await plan.write(
            shown, lambda: self._client.value(method, path, params=params, json_body=body), answer
        )

    async def check(self) -> str:
        me = await self._client.value(
            "GET",
            "/token/session/>whoAmI",
            params={"fields": "employeeId,companyId,employee(firstName,lastName)"},
        )
        person = me.get("employee") or {}
        name = " ".join(str(person[k]) for k in ("firstName", "lastName") if person.get(k))
        if self.settings.integer(API_EMPLOYEE_SETTING) is None and me.get("employeeId") is not None:
            self._identity.seed(str(me["employeeId"]))
        return (
            f"tripletex at {self._client.base_url}: authenticated as employee {me.get('employeeId')}"
            f"{f' ({name})' if name else ''} of company {me.get('companyId')}{await self.identity_note()}"
        )

    async def _discover_identity(self) -> str | None:
        """The employee our session acts as (``whoAmI``), which Tripletex names in ``changes``;
        setting api_employee_id overrides it (an integration whose changes another employee makes)."""
        override = self.settings.integer(API_EMPLOYEE_SETTING)
        if override is not None:
            return str(override)
        me = await self._client.value("GET", "/token/session/>whoAmI", params={"fields": "employeeId"})
        return str(me["employeeId"]) if me.get("employeeId") is not None else None

    # -- inbound ----------------------------------------------------------------------------------

    async def fetch(self, entity: Entity, external_id: str) -> ExternalRecord | None:
        """The record by its Tripletex id; version and author as ``push`` reports them."""
        if _numeric_id(external_id) is None:
            return None  # Tripletex ids are numbers: nothing else can exist there
        path = f"/{entity.value}/{external_id}"
        params = {"fields": mapping.FETCH_FIELDS[entity.value]}
        resp = await self._client.call("GET", path, params=params, allow=(404,))
        if resp.status == 404:
            return None
        value: dict[str, Any] = unwrap(resp, "value", f"GET {path}")
        version = value.get("version")
        return ExternalRecord(
            external_id=str(value.get("id", external_id)),
            value=value,
            version=None if version is None else str(version),
            author=mapping.last_author(value),
        )

    # -- reconciliation and mapping validation ---------------------------------------------------

    def list_records(
        self, entity: Entity, since: str | None, *, page_size: int = DEFAULT_PAGE_SIZE
    ) -> AsyncIterator[ListedPage]:
        return listing.list_records(self._client, entity, since, page_size)

    def listed(self, entity: Entity, value: Mapping[str, Any]) -> Listed:
        return listing.listed(value)

    async def find_record(self, entity: Entity, *, cw_id: str | None, number: str | None) -> Listed | None:
        return None if number is None else await listing.find_by_number(self._client, entity, number)

    async def catalogue(self, name: str) -> frozenset[str]:
        path, key = CATALOGUES[name]
        found = await self._client.values(path, {"fields": key})
        return frozenset(str(v[key]) for v in found if v.get(key) is not None)

    async def register_webhook(self, url: str, secret: str) -> str:
        """One subscription per event CW syncs, signed with ``secret``; existing ones are updated."""
        parts = urlsplit(url)
        if parts.scheme != "https" and parts.hostname not in ("127.0.0.1", "localhost"):
            raise MappingError(
                f"Tripletex calls only absolute HTTPS URLs back, not {url}: set CWI_PUBLIC_URL"
            )
        existing = await self._client.values(mapping.SUBSCRIPTIONS, {"fields": "id,event,targetUrl"})
        known = {(s.get("event"), s.get("targetUrl")): s["id"] for s in existing if "id" in s}
        created = updated = 0
        for event in WEBHOOK_EVENTS:
            body = {"event": event, "targetUrl": url, "fields": WEBHOOK_FIELDS, "hmacSharedSecret": secret}
            sub_id = known.get((event, url))
            if sub_id is None:
                await self._client.value("POST", mapping.SUBSCRIPTIONS, json_body=body)
                created += 1
            else:  # re-registering rotates the secret of what is there
                await self._client.value("PUT", f"{mapping.SUBSCRIPTIONS}/{sub_id}", json_body=body)
                updated += 1
        return f"tripletex: {created} event subscriptions created, {updated} updated, calling {url}"

    # -- customers, suppliers, projects -------------------------------------------------------

    async def _payload(self, change: OutboundChange, settings: SettingsReader, plan: Plan) -> Payload:
        countries = {
            code: await plan.reference(f"id of country {code}", partial(self._country, code))
            for code in sorted(_countries(change.record))
        }
        customer: Ref = ""
        if isinstance(change.record, Project):
            customer = await self._customer(mapping.project_customer_number(change.record), plan)
        return self._map(change, settings, countries, customer)

    def _map(
        self, change: OutboundChange, settings: SettingsReader, countries: Mapping[str, Ref], customer: Ref
    ) -> Payload:
        if change.entity is Entity.customer:
            return mapping.customer_payload(record_of(change, Customer), settings, countries)
        if change.entity is Entity.supplier:
            return mapping.supplier_payload(record_of(change, Supplier), countries)
        return mapping.project_payload(record_of(change, Project), settings, customer)

    async def _find(self, change: OutboundChange, kind: _Kind) -> dict[str, Any] | None:
        """The Tripletex object to update: the known id if it still exists, else by CW number."""
        known = _numeric_id(change.known_external_id)
        if known is not None:
            resp = await self._client.call(
                "GET", f"{kind.path}/{known}", params={"fields": "id,version"}, allow=(404,)
            )
            if resp.status != 404:
                found: dict[str, Any] = unwrap(resp, "value", f"GET {kind.path}/{known}")
                return found
        record = change.record
        if record is None or isinstance(record, Invoice):
            return None
        number = record.number
        matches = await self._client.values(kind.path, {kind.key_param: number, "fields": "id,version"})
        return matches[0] if matches else None

    async def _put_versioned(
        self, path: str, found: dict[str, Any], payload: Payload, params: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """PUT with the version we read; on 409 (edited meanwhile) re-read once and retry. A 404 means
        a user deleted the object since we found it: transient, so the next attempt looks again."""
        target = f"{path}/{found['id']}"
        for attempt in range(2):
            body = {**payload, "id": found["id"], "version": found.get("version")}
            resp = await self._client.call("PUT", target, params=params, json_body=body, allow=(404, 409))
            if resp.status == 404:
                raise TransientError(f"PUT {target}: deleted in Tripletex while we wrote it")
            if resp.status != 409:
                updated: dict[str, Any] = unwrap(resp, "value", f"PUT {target}")
                return updated
            if attempt == 0:
                found = await self._client.value("GET", target, params={"fields": "id,version"})
        raise TransientError(f"PUT {target}: edited in Tripletex while we wrote it, twice", retry_after=5.0)

    async def _delete(
        self, change: OutboundChange, kind: _Kind, author: str | None, plan: Plan
    ) -> PushResult:
        assumed = {
            "id": change.known_external_id or placeholder(f"id of {change.entity.value} {change.cw_id}")
        }
        found = await plan.existing(lambda: self._find(change, kind), assume=assumed)
        if found is None:
            return PushResult("unchanged", change.known_external_id, author=author)
        target = f"{kind.path}/{found['id']}"
        shown = PreparedRequest("DELETE", self._client.base_url + target, self._client.preview_headers())
        send = partial(self._client.call, "DELETE", target, allow=(404,))
        resp = await plan.write(shown, send, HttpResponse(204, {}, b""))
        return PushResult("unchanged" if resp.status == 404 else "deleted", str(found["id"]), author=author)

    # -- invoices --------------------------------------------------------------------------------

    def _invoice_record(self, change: OutboundChange) -> Invoice:
        if change.action is Action.deleted:
            raise NotSupported(
                f"invoice {change.cw_id}: Tripletex invoices cannot be deleted, only credited, and credit "
                "notes are out of scope for this integration; credit the invoice in Tripletex by hand"
            )
        return record_of(change, Invoice)

    async def _push_invoice(
        self, invoice: Invoice, settings: SettingsReader, author: str | None, plan: Plan
    ) -> PushResult:
        """Order by CW number, then invoice it; an order already invoiced is never invoiced again.

        The lookup is by order number even when the sync log knows the invoice id: a charged
        invoice cannot change, so what matters is whether its order matches.
        """
        payload = mapping.order_payload(
            invoice, settings, await self._customer(invoice.customer_number, plan)
        )
        start, end = mapping.lookup_window(invoice)
        search = {
            "number": invoice.number,
            "orderDateFrom": start,
            "orderDateTo": end,
            "fields": ORDER_FIELDS,
        }
        orders = await plan.existing(partial(self._client.values, "/order", search)) or []
        if not orders:
            order = await self._write(plan, "POST", "/order", payload, new="order")
        else:
            order = orders[0]
            charged = await self._invoice_of(order, start, end)
            if charged is not None:
                if mapping.order_matches(order, payload):
                    return _result("unchanged", charged, payload, author)
                raise NotSupported(
                    f"invoice {invoice.number} is already charged in Tripletex (invoice id {charged['id']}) "
                    "and differs from CW; a charged invoice can only be credited, which this integration "
                    "does not do"
                )
            if not mapping.order_matches(order, payload):
                order = await self._put_versioned("/order", order, payload, {"updateLinesAndGroups": "true"})
        params = mapping.invoice_params(invoice, settings)
        path = f"/order/{order['id']}/:invoice"
        charged = await self._write(plan, "PUT", path, None, new="invoice", params=params)
        return _result("created", charged, payload, author)

    async def _invoice_of(self, order: dict[str, Any], start: str, end: str) -> dict[str, Any] | None:
        """The charged invoice made from ``order``, if any (the spec offers no order filter)."""
        params = {"invoiceDateFrom": start, "invoiceDateTo": end, "fields": "id,version,orders(id)"}
        customer = (order.get("customer") or {}).get("id")
        if customer is not None:
            params["customerId"] = str(customer)
        for candidate in await self._client.values("/invoice", params):
            if any(o.get("id") == order["id"] for o in candidate.get("orders") or [] if isinstance(o, dict)):
                return candidate
        return None

    # -- references and identity -----------------------------------------------------------------

    async def _customer(self, number: str, plan: Plan) -> Ref:
        found: Ref = await plan.reference(f"id of customer {number}", partial(self._require_customer, number))
        return found

    async def _require_customer(self, number: str) -> int:
        if not number.isdigit():
            raise MappingError(
                f"customer {number!r} cannot be a Tripletex customer number (those are whole numbers)"
            )
        found = await self._client.values("/customer", {"customerAccountNumber": number, "fields": "id"})
        if not found:
            # Usually the customer's own message is still on its way (or in retry): wait for it.
            raise DependencyMissing(f"customer number {number}", "Tripletex")
        return int(found[0]["id"])

    async def _country(self, code: str) -> int:
        if code not in self._country_ids:
            found = await self._client.values("/country", {"code": code, "fields": "id"})
            if not found:
                raise MappingError(f"Tripletex has no country with ISO code {code}")
            self._country_ids[code] = int(found[0]["id"])
        return self._country_ids[code]


def _countries(record: CWRecord | None) -> set[str]:
    return mapping.countries_of(record) if isinstance(record, Customer | Supplier) else set()


def _result(outcome: str, value: dict[str, Any], payload: Payload, author: str | None) -> PushResult:
    version = value.get("version")
    return PushResult(
        outcome=outcome,
        external_id=str(value["id"]),
        version=None if version is None else str(version),
        content_hash=content_hash(payload),
        author=author,
    )
