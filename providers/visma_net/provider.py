"""Visma.net ERP provider: upsert by natural key, invoices created as drafts and optionally released.

Natural keys: customer and supplier number (Visma's customerCd/supplierCd), project number
(projectID), and for invoices the CW invoice id written as ``externalReference``. Visma exposes no
API user on its DTOs, so ``author`` is always None; ``version`` is the ``ETag`` where Visma sends one
(suppliers, per the spec).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import aiohttp

from contracts import Action, Customer, CWRecord, Entity, Invoice, Project, Supplier
from providers.base import ConnectionSpec, OutboundChange, PreparedRequest, PushResult, content_hash
from providers.errors import MappingError, NotSupported, ProviderRejected, TransientError
from providers.http import HttpResponse
from providers.visma_net import mapping
from providers.visma_net.client import KIND, VismaNetClient, item_path, location_id

INVOICES = "/v1/customerinvoice"
CREATE_INVOICE = "/v2/customerinvoice"  # the v1 POST is deprecated
DRAFT_STATUSES = frozenset({"Hold", "Balanced"})  # not yet released
PAGE = {"pageNumber": "1", "pageSize": "100"}  # Visma requires paging on every list

R = TypeVar("R", bound=Customer | Supplier | Project | Invoice)


@dataclass(frozen=True, slots=True)
class _Resource:
    """A master-data endpoint keyed by the record's number."""

    name: str
    collection: str
    record_type: type[Customer] | type[Supplier] | type[Project]
    build: Callable[[Any, ConnectionSpec], mapping.JsonObject]
    create_extras: Mapping[str, Any]


RESOURCES: Mapping[Entity, _Resource] = {
    Entity.customer: _Resource(
        "customer", "/v1/customer", Customer, mapping.customer_body, mapping.CREATE_EXTRAS
    ),
    Entity.supplier: _Resource(
        "supplier", "/v1/supplier", Supplier, mapping.supplier_body, mapping.CREATE_EXTRAS
    ),
    Entity.project: _Resource("project", "/v1/project", Project, mapping.project_body, {}),
}


def _record(change: OutboundChange, record_type: type[R]) -> R:
    record: CWRecord | None = change.record
    if not isinstance(record, record_type):
        raise MappingError(
            f"{change.entity.value}.{change.action.value} {change.cw_id} carries no {record_type.__name__}"
        )
    return record


def _version(resp: HttpResponse) -> str | None:
    return resp.headers.get("ETag")


class VismaNetProvider:
    kind: ClassVar[str] = KIND

    def __init__(self, spec: ConnectionSpec, http: aiohttp.ClientSession) -> None:
        self.spec = spec
        self.client = VismaNetClient(spec, http)

    async def push(self, change: OutboundChange) -> PushResult:
        if change.entity is Entity.invoice:
            if change.action is Action.deleted:
                return await self._delete_invoice(change)
            return await self._upsert_invoice(change, _record(change, Invoice))
        resource = RESOURCES[change.entity]
        if change.action is Action.deleted:
            raise self._no_delete(resource, change.known_external_id or change.cw_id)
        return await self._upsert(resource, change, _record(change, resource.record_type))

    async def check(self) -> str:
        await self.client.get_json("/v1/customer", params={"pageNumber": "1", "pageSize": "1"})
        return (
            f"{KIND} at {self.client.base_url}: authenticated as API client "
            f"{self.spec.credentials.get('client_id')} for tenant {self.client.tenant_id}"
        )

    def preview(self, change: OutboundChange) -> list[PreparedRequest]:
        if change.entity is Entity.invoice:
            return self._preview_invoice(change)
        resource = RESOURCES[change.entity]
        if change.action is Action.deleted:
            raise self._no_delete(resource, change.known_external_id or change.cw_id)
        body = resource.build(_record(change, resource.record_type), self.spec)
        return [self.client.prepare("POST", resource.collection, {**body, **resource.create_extras})]

    # customers, suppliers, projects

    def _no_delete(self, resource: _Resource, key: str) -> NotSupported:
        return NotSupported(
            f"Visma.net ERP's API cannot delete a {resource.name} ({resource.collection} has no DELETE): "
            f"set {resource.name} {key} inactive in Visma.net instead"
        )

    async def _upsert(
        self, resource: _Resource, change: OutboundChange, record: Customer | Supplier | Project
    ) -> PushResult:
        body = resource.build(record, self.spec)
        digest = content_hash(body)  # create-only flags left out, so create and update hash alike
        known = change.known_external_id
        if known is not None:
            resp = await self.client.request(
                "PUT", item_path(resource.collection, known), body=body, allow_404=True
            )
            if resp.status != 404:
                return PushResult("updated", known, _version(resp), digest)
        key = record.number
        if known != key and await self.client.get_json(item_path(resource.collection, key)) is not None:
            resp = await self.client.request("PUT", item_path(resource.collection, key), body=body)
            return PushResult("updated", key, _version(resp), digest)
        resp = await self.client.request("POST", resource.collection, body={**body, **resource.create_extras})
        # Our number is the key (overrideNumberSeries keeps it); Location could name an internal id.
        return PushResult("created", key, _version(resp), digest)

    # invoices

    async def _find_invoice(self, known: str | None, cw_id: str) -> dict[str, Any] | None:
        """The invoice by its known number, else by externalReference = CW invoice id."""
        if known is not None:
            found = await self.client.get_json(item_path(INVOICES, known))
            if isinstance(found, dict):
                return found
        # The filter's matching rule is undocumented: keep only exact matches.
        listed = await self.client.get_json(INVOICES, params={"externalReference": cw_id, **PAGE})
        for doc in listed if isinstance(listed, list) else []:
            if isinstance(doc, dict) and doc.get("externalReference") == cw_id and doc.get("referenceNumber"):
                return doc
        return None

    async def _upsert_invoice(self, change: OutboundChange, invoice: Invoice) -> PushResult:
        plan = mapping.invoice_plan(self.spec)
        body = mapping.invoice_body(invoice, self.spec)
        existing = await self._find_invoice(change.known_external_id, invoice.id)
        if existing is None:
            return await self._create_invoice(invoice, body, plan)
        number = str(existing["referenceNumber"])
        if existing.get("status") not in DRAFT_STATUSES:
            if change.action is Action.created or change.recovering:
                return PushResult("unchanged", number, None, content_hash(body))
            raise NotSupported(
                f"invoice {number} is {existing.get('status')} in Visma.net: a released invoice cannot be "
                "changed; correct it with a credit note in Visma.net"
            )
        lines = await self._line_numbers(number, existing)
        update = mapping.invoice_update_body(invoice, self.spec, lines)
        resp = await self.client.request("PUT", item_path(INVOICES, number), body=update)
        await self._finish(number, plan)
        return PushResult("updated", number, _version(resp), content_hash(body))

    async def _create_invoice(
        self, invoice: Invoice, body: mapping.JsonObject, plan: mapping.InvoicePlan
    ) -> PushResult:
        resp = await self.client.request("POST", CREATE_INVOICE, body=body)
        number = location_id(resp)
        if number is None:
            found = await self._find_invoice(None, invoice.id)
            if found is None:
                # The lookup of a retry will find it if it was written.
                raise TransientError(
                    f"{KIND}: invoice {invoice.id} created, but Visma returned no invoice number"
                )
            number = str(found["referenceNumber"])
        await self._finish(number, plan)
        return PushResult("created", number, _version(resp), content_hash(body))

    async def _line_numbers(self, number: str, doc: dict[str, Any]) -> list[int]:
        if "invoiceLines" not in doc:  # list results may leave the lines out
            doc = await self.client.get_json(item_path(INVOICES, number)) or {}
        return [int(line["lineNumber"]) for line in doc.get("invoiceLines") or [] if "lineNumber" in line]

    async def _finish(self, number: str, plan: mapping.InvoicePlan) -> None:
        if plan.release:
            await self._action(number, "release")
        if plan.send:
            await self._action(number, "sendToAutoInvoice")

    async def _action(self, number: str, action: str) -> None:
        resp = await self.client.request("POST", f"{item_path(INVOICES, number)}/action/{action}")
        result = resp.json()
        if isinstance(result, dict) and result.get("actionResult") == "Failed":
            raise ProviderRejected(
                f"Visma.net could not {action} invoice {number}: {result.get('errorInfo')}"
            )

    async def _delete_invoice(self, change: OutboundChange) -> PushResult:
        existing = await self._find_invoice(change.known_external_id, change.cw_id)
        if existing is None:
            return PushResult("unchanged", change.known_external_id)
        number = str(existing["referenceNumber"])
        if existing.get("status") not in DRAFT_STATUSES:
            raise NotSupported(
                f"invoice {number} is {existing.get('status')} in Visma.net: only unreleased invoices "
                "(Hold, Balanced) can be deleted; issue a credit note in Visma.net instead"
            )
        await self.client.request("DELETE", item_path(INVOICES, number), allow_404=True)
        return PushResult("deleted", number)

    def _preview_invoice(self, change: OutboundChange) -> list[PreparedRequest]:
        if change.action is Action.deleted:
            known = change.known_external_id
            path = item_path(INVOICES, known) if known else f"{INVOICES}/{{invoiceNumber}}"
            return [self.client.prepare("DELETE", path)]
        plan = mapping.invoice_plan(self.spec)
        requests = [
            self.client.prepare(
                "POST", CREATE_INVOICE, mapping.invoice_body(_record(change, Invoice), self.spec)
            )
        ]
        actions = (["release"] if plan.release else []) + (["sendToAutoInvoice"] if plan.send else [])
        requests += [
            self.client.prepare("POST", f"{INVOICES}/{{invoiceNumber}}/action/{name}") for name in actions
        ]
        return requests
