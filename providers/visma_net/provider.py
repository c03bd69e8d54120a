"""Visma.net ERP provider: upsert by natural key, invoices created as drafts and optionally released.

Natural keys: customer and supplier number (Visma's customerCd/supplierCd), project number
(projectID), and for invoices the CW invoice id written as ``externalReference``. Visma exposes no
API user on its DTOs, so ``author`` is always None. ``version`` is the record's
``lastModifiedDateTime``, read back after each write (one GET): every read DTO carries it, which the
``ETag`` (suppliers only) does not, and ``fetch`` reports the same field, so a webhook or a fetch of
our own write compares equal.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import aiohttp

from contracts import Action, Customer, Entity, Invoice, Project, Supplier
from providers.base import (
    ConnectionSpec,
    ExternalRecord,
    OutboundChange,
    PushResult,
    content_hash,
)
from providers.catalogues import Reference
from providers.errors import DependencyMissing, NotSupported, ProviderRejected, TransientError
from providers.http import HttpResponse
from providers.listing import DEFAULT_PAGE_SIZE, Listed, ListedPage
from providers.plan import Plan, placeholder
from providers.settings import SettingsReader
from providers.vendor import VendorProvider, record_of
from providers.visma_net import listing, mapping
from providers.visma_net.client import VismaNetClient, item_path, location_id, token_subject

INVOICES = "/v1/customerinvoice"
CREATE_INVOICE = "/v2/customerinvoice"  # the v1 POST is deprecated
DRAFT_STATUSES = frozenset({"Hold", "Balanced"})  # not yet released
PAGE = {"pageNumber": "1", "pageSize": "100"}  # Visma requires paging on every list
# What a dry run (a preview) pretends Visma answered to a write.
OK, CREATED, GONE = HttpResponse(200, {}, b"{}"), HttpResponse(201, {}, b""), HttpResponse(204, {}, b"")


@dataclass(frozen=True, slots=True)
class _Resource:
    """A master-data endpoint keyed by the record's number."""

    name: str
    collection: str
    record_type: type[Customer] | type[Supplier] | type[Project]
    build: Callable[[Any, SettingsReader], mapping.JsonObject]
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


def _collection(entity: Entity) -> str:
    return INVOICES if entity is Entity.invoice else RESOURCES[entity].collection


def webhook_steps(spec: ConnectionSpec, url: str) -> str:
    """What an operator does in Visma's Developer Portal: Visma.net has no subscription API."""
    header = spec.setting("webhook_signature_header") or "X-Visma-Signature"
    return (
        f"{spec.kind}: Visma.net has no API to subscribe to webhooks; set it up by hand:\n"
        "  1. Sign in to the Visma Developer Portal (https://oauth.developers.visma.com) as the owner of "
        f"the integration {spec.credentials.get('client_id') or '<client_id>'}.\n"
        f"  2. Under Webhooks, add a subscription for tenant {spec.setting('tenant_id') or '<tenant_id>'} "
        f"with the callback URL {url}\n"
        "  3. Choose the events Customer, Supplier, Project and Customer invoice: created, updated and "
        "deleted.\n"
        "  4. Paste this connection's credential webhook_secret as the signing secret; Visma signs the body "
        f"with HMAC-SHA256 in header {header} (setting webhook_signature_header if your tenant uses another)."
    )


CATALOGUES: Mapping[str, tuple[str, str, Mapping[str, str]]] = {
    "vat_codes": ("/v1/vat", "vatId", {}),
    "accounts": ("/v1/account", "accountCD", {}),
    "project_templates": ("/v1/project", "projectID", {"systemTemplate": "true", "pageSize": "100"}),
    "branches": ("/v1/branch", "number", {}),
}


class VismaNetProvider(VendorProvider):
    kind = "visma_net"
    readers = mapping.READERS
    references = (
        Reference("vat_code.<rate>", "vat_codes", "VAT code"),
        Reference("revenue_account", "accounts", "account"),
        Reference("project_template", "project_templates", "project template"),
        Reference("branch_number", "branches", "branch"),
    )

    def __init__(self, spec: ConnectionSpec, http: aiohttp.ClientSession) -> None:
        super().__init__(spec, http)
        self.client = VismaNetClient(spec, http)
        self._known_customers: set[str] = set()

    async def _run(self, change: OutboundChange, plan: Plan) -> PushResult:
        if change.entity is Entity.invoice:
            if change.action is Action.deleted:
                return await self._delete_invoice(change, plan)
            return await self._upsert_invoice(change, record_of(change, Invoice), plan)
        resource = RESOURCES[change.entity]
        if change.action is Action.deleted:
            raise self._no_delete(resource, change.known_external_id or change.cw_id)
        return await self._upsert(resource, change, record_of(change, resource.record_type), plan)

    async def check(self) -> str:
        await self.client.get_json("/v1/customer", params={"pageNumber": "1", "pageSize": "1"})
        return (
            f"{self.kind} at {self.client.base_url}: authenticated as API client "
            f"{self.spec.credentials.get('client_id')} for tenant {self.client.tenant_id}"
            f"{await self.identity_note()}"
        )

    async def _discover_identity(self) -> str | None:
        """The subject of our access token: Visma's DTOs name no author, and its webhooks name the
        user behind a change by that subject. None when the token is not a JWT."""
        return token_subject(await self.client.tokens.get())

    # inbound

    async def fetch(self, entity: Entity, external_id: str) -> ExternalRecord | None:
        """The record by its Visma key (number, projectID, invoice referenceNumber), as its read DTO."""
        found = await self.client.get_json(item_path(_collection(entity), external_id))
        if not isinstance(found, dict):
            return None
        stamp = found.get("lastModifiedDateTime")
        return ExternalRecord(external_id, found, str(stamp) if stamp else None, None)

    # reconciliation and mapping validation

    def list_records(
        self, entity: Entity, since: str | None, *, page_size: int = DEFAULT_PAGE_SIZE
    ) -> AsyncIterator[ListedPage]:
        return listing.list_records(self.client, entity, since, page_size)

    def listed(self, entity: Entity, value: Mapping[str, Any]) -> Listed:
        return listing.listed(entity, value)

    async def find_record(self, entity: Entity, *, cw_id: str | None, number: str | None) -> Listed | None:
        """By the number (the key of customers, suppliers, projects); an invoice by CW's id
        (externalReference)."""
        key = number
        if entity is Entity.invoice:
            found = await self._find_invoice(None, cw_id) if cw_id else None
            key = None if found is None else str(found.get("referenceNumber"))
        record = None if key is None else await self.fetch(entity, key)
        return None if record is None else listing.listed(entity, record.value)

    async def catalogue(self, name: str) -> frozenset[str]:
        path, key, params = CATALOGUES[name]
        return await listing.list_keys(self.client, path, key, params)

    async def register_webhook(self, url: str, secret: str) -> str:
        """No API call: the steps for the Developer Portal (the secret is not repeated in them)."""
        return webhook_steps(self.spec, url)

    # writes, through the plan

    async def _write(
        self,
        plan: Plan,
        method: str,
        path: str,
        body: Any = None,
        *,
        answer: HttpResponse = OK,
        allow_404: bool = False,
    ) -> HttpResponse:
        """One write; with ``allow_404`` a 404 comes back to the caller (a key that is gone)."""
        send = partial(self.client.request, method, path, body=body, allow_404=allow_404)
        return await plan.write(self.client.prepare(method, path, body), send, answer)

    async def _stamp(
        self, plan: Plan, collection: str, key: str, body: Mapping[str, Any] | None = None
    ) -> str | None:
        """The record's lastModifiedDateTime as Visma now holds it: the version echoes compare.

        Visma answers a write without the record, so this is a second request, and a user's edit
        may land between the two: the version read is then the user's, and claiming it as ours
        would make the user's webhook an echo (the change lost for CW). So with the ``body`` written,
        a record that no longer holds it gives no version: echoes of this write are then told by the
        inbound path's own checks, and the user's change reaches CW (at worst one CW write too many,
        which CW's echo marks stop). An invoice's release or sending after the write changes only
        what we did not write (its status), so the claim survives them; its lines (sent as
        operations, read as lines) are passed over."""

        async def read() -> str | None:
            found = await self.client.get_json(item_path(collection, key))
            if not isinstance(found, dict) or (body is not None and not mapping.still_holds(body, found)):
                return None
            stamp = found.get("lastModifiedDateTime")
            return str(stamp) if stamp else None

        return await plan.existing(read)

    # customers, suppliers, projects

    def _no_delete(self, resource: _Resource, key: str) -> NotSupported:
        return NotSupported(
            f"Visma.net ERP's API cannot delete a {resource.name} ({resource.collection} has no DELETE): "
            f"set {resource.name} {key} inactive in Visma.net instead"
        )

    async def _upsert(
        self, resource: _Resource, change: OutboundChange, record: Customer | Supplier | Project, plan: Plan
    ) -> PushResult:
        if isinstance(record, Project) and record.customer_number:
            await self._customer(record.customer_number, plan)
        body = resource.build(record, self.settings)
        digest = content_hash(body)  # create-only flags left out, so create and update hash alike
        known = change.known_external_id
        collection = resource.collection
        if known is not None:
            resp = await self._write(plan, "PUT", item_path(collection, known), body, allow_404=True)
            if resp.status != 404:
                return PushResult("updated", known, await self._stamp(plan, collection, known, body), digest)
        key = record.number
        if known != key and await plan.existing(partial(self.client.get_json, item_path(collection, key))):
            await self._write(plan, "PUT", item_path(collection, key), body)
            return PushResult("updated", key, await self._stamp(plan, collection, key, body), digest)
        await self._write(plan, "POST", collection, {**body, **resource.create_extras}, answer=CREATED)
        # Our number is the key (overrideNumberSeries keeps it); Location could name an internal id.
        return PushResult("created", key, await self._stamp(plan, collection, key, body), digest)

    async def _customer(self, number: str, plan: Plan) -> None:
        await plan.reference(f"customer {number}", partial(self._require_customer, number))

    async def _require_customer(self, number: str) -> None:
        """A project or invoice waits (DependencyMissing) until its customer is in Visma.net."""
        if number in self._known_customers:
            return
        if await self.client.get_json(item_path("/v1/customer", number)) is None:
            raise DependencyMissing(f"customer {number}", "Visma.net")
        self._known_customers.add(number)

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

    async def _upsert_invoice(self, change: OutboundChange, invoice: Invoice, plan: Plan) -> PushResult:
        steps = mapping.invoice_plan(self.settings)
        body = mapping.invoice_body(invoice, self.settings)
        existing = await plan.existing(partial(self._find_invoice, change.known_external_id, invoice.id))
        if existing is None:
            return await self._create_invoice(invoice, body, steps, plan)
        number = str(existing["referenceNumber"])
        if existing.get("status") not in DRAFT_STATUSES:
            if change.action is Action.created or change.recovering:
                stamp = existing.get("lastModifiedDateTime")
                return PushResult("unchanged", number, str(stamp) if stamp else None, content_hash(body))
            raise NotSupported(
                f"invoice {number} is {existing.get('status')} in Visma.net: a released invoice cannot be "
                "changed; correct it with a credit note in Visma.net"
            )
        lines = await self._line_numbers(number, existing)
        update = mapping.invoice_update_body(invoice, self.settings, lines)
        await self._write(plan, "PUT", item_path(INVOICES, number), update)
        await self._finish(number, steps, plan)
        stamp = await self._stamp(plan, INVOICES, number, update)
        return PushResult("updated", number, stamp, content_hash(body))

    async def _create_invoice(
        self, invoice: Invoice, body: mapping.JsonObject, steps: mapping.InvoicePlan, plan: Plan
    ) -> PushResult:
        await self._customer(invoice.customer_number, plan)
        new = HttpResponse(201, {"Location": f"{INVOICES}/{placeholder('number of the new invoice')}"}, b"")
        resp = await self._write(plan, "POST", CREATE_INVOICE, body, answer=new)
        number = location_id(resp)
        if number is None:
            found = await self._find_invoice(None, invoice.id)
            if found is None:
                # The lookup of a retry will find it if it was written.
                raise TransientError(
                    f"{self.kind}: invoice {invoice.id} created, but Visma returned no invoice number"
                )
            number = str(found["referenceNumber"])
        await self._finish(number, steps, plan)
        stamp = await self._stamp(plan, INVOICES, number, body)
        return PushResult("created", number, stamp, content_hash(body))

    async def _line_numbers(self, number: str, doc: dict[str, Any]) -> list[int]:
        if "invoiceLines" not in doc:  # list results may leave the lines out
            doc = await self.client.get_json(item_path(INVOICES, number)) or {}
        return [int(line["lineNumber"]) for line in doc.get("invoiceLines") or [] if "lineNumber" in line]

    async def _finish(self, number: str, steps: mapping.InvoicePlan, plan: Plan) -> None:
        if steps.release:
            await self._action(number, "release", plan)
        if steps.send:
            await self._action(number, "sendToAutoInvoice", plan)

    async def _action(self, number: str, action: str, plan: Plan) -> None:
        resp = await self._write(plan, "POST", f"{item_path(INVOICES, number)}/action/{action}")
        result = resp.json()
        if isinstance(result, dict) and result.get("actionResult") == "Failed":
            raise ProviderRejected(
                f"Visma.net could not {action} invoice {number}: {result.get('errorInfo')}"
            )

    async def _delete_invoice(self, change: OutboundChange, plan: Plan) -> PushResult:
        assumed = {
            "referenceNumber": change.known_external_id or placeholder(f"number of invoice {change.cw_id}"),
            "status": "Balanced",
        }
        find = partial(self._find_invoice, change.known_external_id, change.cw_id)
        existing = await plan.existing(find, assume=assumed)
        if existing is None:
            return PushResult("unchanged", change.known_external_id)
        number = str(existing["referenceNumber"])
        if existing.get("status") not in DRAFT_STATUSES:
            raise NotSupported(
                f"invoice {number} is {existing.get('status')} in Visma.net: only unreleased invoices "
                "(Hold, Balanced) can be deleted; issue a credit note in Visma.net instead"
            )
        await self._write(plan, "DELETE", item_path(INVOICES, number), answer=GONE, allow_404=True)
        return PushResult("deleted", number)
