"""The Uni Economy (Unimicro) provider: customers, suppliers, projects and invoices under /api/biz."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from functools import partial
from typing import Any
from urllib.parse import urlencode

import aiohttp

from contracts import Action, Customer, Entity, Invoice, Project, Supplier
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
from providers.http import redact_headers
from providers.listing import DEFAULT_PAGE_SIZE, Listed, ListedPage
from providers.plan import Plan, placeholder
from providers.uni_economy import inbound, listing, mapping
from providers.uni_economy.client import UniClient
from providers.uni_economy.mapping import KINDS, EntityKind, InvoiceIds, Lookup
from providers.vendor import VendorProvider

EVENT_PLAN_NAME = "Contracting Works integration"
EVENT_PLAN_MODELS = "Customer,Supplier,Project,CustomerInvoice"


def _party_payload(record: Customer | Supplier | Project, project_customer: Any = None) -> dict[str, Any]:
    if isinstance(record, Customer):
        return mapping.customer_payload(record)
    if isinstance(record, Supplier):
        return mapping.supplier_payload(record)
    return mapping.project_payload(record, project_customer)


def _project_customer(project: Project) -> Lookup | None:
    """The lookup of a project's customer, when the record names its number."""
    if project.customer_number is None:
        return None
    number = mapping.whole_number(project.customer_number, "customer number")
    return Lookup(
        "customers",
        f"CustomerNumber eq {number}",
        f"customer number {project.customer_number}",
        "push the customer first, then replay this message",
        cacheable=False,
    )


def _result(outcome: str, entity: Any, payload: Any) -> PushResult:
    if not isinstance(entity, dict) or entity.get("ID") is None:
        # Retrying is safe: the next attempt finds what was written by its natural key.
        raise TransientError(f"Uni Economy answered the {outcome} write without the entity's ID")
    version, author = inbound.stamp(entity)
    return PushResult(
        outcome=outcome,
        external_id=str(entity["ID"]),
        version=version,
        # The hash is of what we map, without Uni's IDs, so a create and a later no-op update agree.
        content_hash=content_hash(payload),
        author=author,
    )


def _global_identity(user: dict[str, Any]) -> str | None:
    found = user.get("GlobalIdentity")
    return str(found) if found else None


def _id_of(entity: Any) -> str:
    return str(entity.get("ID")) if isinstance(entity, dict) else "?"


class UniEconomyProvider(VendorProvider):
    kind = "uni_economy"
    readers = inbound.READERS
    references = (
        Reference("vat_code.<rate>", "vat_codes", "VatCode"),
        Reference("revenue_account", "accounts", "account number"),
        Reference("department_id", "departments", "department ID"),
        Reference("base_currency", "currencies", "currency code"),
    )

    def __init__(self, spec: ConnectionSpec, http: aiohttp.ClientSession) -> None:
        super().__init__(spec, http)
        self._client = UniClient(spec, http)
        self._ids: dict[tuple[str, str], Any] = {}

    async def _run(self, change: OutboundChange, plan: Plan) -> PushResult:
        if change.action is Action.deleted:
            return await self._delete(change, plan)
        record = change.record
        if record is None:
            raise MappingError(f"{change.entity}.{change.action} for {change.cw_id} carries no record")
        if isinstance(record, Invoice):
            return await self._push_invoice(change, record, plan)
        kind = KINDS[change.entity]
        lookup = _project_customer(record) if isinstance(record, Project) else None
        payload = _party_payload(record, await self._resolve(lookup, plan) if lookup else None)
        key = mapping.key_filter(kind, mapping.natural_key(record))
        existing = await plan.existing(partial(self._existing, kind, change.known_external_id, key))
        outcome, entity = await self._write(kind, payload, existing, plan)
        return _result(outcome, entity, payload)

    async def check(self) -> str:
        user = await self._current_user()
        who = user.get("DisplayName") or user.get("Email") or user.get("GlobalIdentity") or "an unnamed user"
        self._identity.seed(_global_identity(user))
        return f"{self.kind} at {self._client.api_url}: authenticated as {who}{await self.identity_note()}"

    async def _current_user(self) -> dict[str, Any]:
        user = await self._client.request("GET", "/users", params={"action": "current-session"})
        return user if isinstance(user, dict) else {}

    async def _discover_identity(self) -> str | None:
        """Our user's GlobalIdentity (current session), which Uni writes as CreatedBy/UpdatedBy."""
        return _global_identity(await self._current_user())

    # -- inbound ----------------------------------------------------------------------------------

    async def fetch(self, entity: Entity, external_id: str) -> ExternalRecord | None:
        """The entity by its Uni ID, expanded for ``to_cw``; version and author as ``push`` reports them."""
        if not external_id.isdigit():
            return None  # Uni IDs are numbers: nothing else can exist there
        params = {"expand": inbound.FETCH_EXPAND[entity]}
        found = await self._client.request(
            "GET", f"/{KINDS[entity].collection}/{external_id}", params=params, missing_ok=True
        )
        if not isinstance(found, dict):
            return None
        version, author = inbound.stamp(found)
        return ExternalRecord(str(found.get("ID", external_id)), found, version, author)

    # -- reconciliation and mapping validation ---------------------------------------------------

    def list_records(
        self, entity: Entity, since: str | None, *, page_size: int = DEFAULT_PAGE_SIZE
    ) -> AsyncIterator[ListedPage]:
        return listing.list_records(self._client, entity, since, page_size)

    def listed(self, entity: Entity, value: Mapping[str, Any]) -> Listed:
        return listing.listed(value)

    async def find_record(self, entity: Entity, *, cw_id: str | None, number: str | None) -> Listed | None:
        return await listing.find_by_key(self._client, entity, cw_id, number)

    async def catalogue(self, name: str) -> frozenset[str]:
        return await listing.catalogue(self._client, name)

    async def register_webhook(self, url: str, secret: str) -> str:
        """One event plan for the entities CW syncs, calling ``url``; re-registering updates it.

        ``SigningKey`` is not in the 2019 spec's Eventplan (providers.md names it for the signed
        callbacks); the spec's schema is open, so the field is sent as documented there.
        """
        plan: dict[str, Any] = {
            "Name": EVENT_PLAN_NAME,
            "Active": True,
            "ModelFilter": EVENT_PLAN_MODELS,
            "OperationFilter": "CUD",
            "SigningKey": secret,
            "Subscribers": [{"Name": "Contracting Works", "Active": True, "Endpoint": url}],
        }
        name_filter = f"Name eq {mapping.odata_literal(EVENT_PLAN_NAME)}"
        existing = await self._client.find_one("eventplans", name_filter, "Subscribers")
        if existing is None:
            made = await self._client.request("POST", "/eventplans", json_body=plan)
            return f"{self.kind}: event plan {_id_of(made)} created for {EVENT_PLAN_MODELS}, calling {url}"
        body = mapping.with_ids(plan, existing)
        await self._client.request("PUT", f"/eventplans/{existing['ID']}", json_body=body)
        return f"{self.kind}: event plan {existing['ID']} updated for {EVENT_PLAN_MODELS}, calling {url}"

    async def _send(
        self, plan: Plan, method: str, path: str, body: Any = None, *, answer: Any, **params: str
    ) -> Any:
        """One write through the plan; a 404 of a DELETE or a PUT is None (gone)."""
        query = f"?{urlencode(params)}" if params else ""
        headers = redact_headers(self._client.headers("<token>"))
        shown = PreparedRequest(method, f"{self._client.api_url}{path}{query}", headers, body)
        gone_ok = method in ("DELETE", "PUT")
        send = partial(
            self._client.request, method, path, params=params or None, json_body=body, missing_ok=gone_ok
        )
        return await plan.write(shown, send, answer)

    async def _existing(
        self, kind: EntityKind, known_id: str | None, key: str | None
    ) -> dict[str, Any] | None:
        """The entity as Uni holds it: by the sync log's id if it still exists, else by natural key."""
        params = {"expand": kind.expand} if kind.expand else None
        if known_id and known_id.isdigit():
            found = await self._client.request(
                "GET", f"/{kind.collection}/{known_id}", params=params, missing_ok=True
            )
            if isinstance(found, dict):
                return found
        if key is None:
            return None
        return await self._client.find_one(kind.collection, key, kind.expand)

    async def _write(
        self, kind: EntityKind, payload: dict[str, Any], existing: dict[str, Any] | None, plan: Plan
    ) -> tuple[str, Any]:
        path = f"/{kind.collection}"
        if existing is None:
            new = {"ID": placeholder(f"ID of the new {kind.collection.removesuffix('s')}")}
            return "created", await self._send(plan, "POST", path, payload, answer=new)
        if mapping.already_holds(existing, payload):
            return "unchanged", existing
        body = mapping.with_ids(payload, existing)
        updated = await self._send(plan, "PUT", f"{path}/{existing['ID']}", body, answer=body)
        if updated is None:  # a user deleted it since we found it: the next attempt looks again
            raise TransientError(f"PUT {path}/{existing['ID']}: deleted in Uni Economy while we wrote it")
        return "updated", updated

    async def _delete(self, change: OutboundChange, plan: Plan) -> PushResult:
        kind = KINDS[change.entity]
        find = partial(self._existing, kind, change.known_external_id, self._delete_key(change, kind))
        assumed = {
            "ID": change.known_external_id or placeholder(f"ID of {change.entity.value} {change.cw_id}")
        }
        existing = await plan.existing(find, assume=assumed)
        if existing is None:
            return PushResult("unchanged", None)  # nothing of ours is there: already as we want it
        if change.entity is Entity.invoice and not mapping.is_draft(existing):
            raise NotSupported(
                f"invoice {change.cw_id} is already invoiced in Uni Economy "
                f"(number {existing.get('InvoiceNumber')}); only drafts can be deleted — credit it in Uni"
            )
        await self._send(plan, "DELETE", f"/{kind.collection}/{existing['ID']}", answer=None)
        return PushResult("deleted", str(existing["ID"]))

    def _delete_key(self, change: OutboundChange, kind: EntityKind) -> str | None:
        if change.entity is Entity.invoice:
            return mapping.key_filter(kind, mapping.invoice_marker(change.cw_id))
        record = change.record
        if isinstance(record, Customer | Supplier | Project):
            return mapping.key_filter(kind, mapping.natural_key(record))
        return None

    async def _push_invoice(self, change: OutboundChange, invoice: Invoice, plan: Plan) -> PushResult:
        settings = self.settings
        for unsupported in ("send_invoices", "release_invoices"):
            if settings.flag(unsupported):
                raise MappingError(
                    f"{self.kind} has no {unsupported.removesuffix('_invoices')} step for invoices (Uni "
                    "distributes finalised invoices by the company's own plan): remove setting "
                    f"{unsupported} and use finalise_invoices=true"
                )
        payload = mapping.invoice_payload(invoice, await self._invoice_ids(invoice, plan), settings)
        kind = KINDS[Entity.invoice]
        key = mapping.key_filter(kind, mapping.invoice_marker(invoice.id))
        existing = await plan.existing(partial(self._existing, kind, change.known_external_id, key))
        if (
            existing is not None
            and not mapping.is_draft(existing)
            and not mapping.already_holds(existing, payload)
        ):
            raise NotSupported(
                f"invoice {invoice.number} is already invoiced in Uni Economy (number "
                f"{existing.get('InvoiceNumber')}) and can no longer change — credit it in Uni and "
                "issue a new one"
            )
        outcome, entity = await self._write(kind, payload, existing, plan)
        if settings.flag("finalise_invoices") and isinstance(entity, dict) and mapping.is_draft(entity):
            entity = await self._finalise(entity, plan)
            outcome = "updated" if outcome == "unchanged" else outcome
        return _result(outcome, entity, payload)

    async def _finalise(self, draft: dict[str, Any], plan: Plan) -> Any:
        path = f"/invoices/{draft['ID']}"
        await self._send(plan, "POST", path, answer={}, action="invoice")
        # The transition's answer is undocumented ({} in the spec): read the invoice back for its state.
        read = partial(self._client.request, "GET", path, params={"expand": "Items"})
        return await plan.existing(read, assume=draft)

    def _lookups(self, invoice: Invoice) -> tuple[Lookup, list[Lookup], list[Lookup], Lookup | None]:
        return mapping.invoice_lookups(invoice, self.settings)

    async def _invoice_ids(self, invoice: Invoice, plan: Plan) -> InvoiceIds:
        customer, vats, accounts, currency = self._lookups(invoice)
        return InvoiceIds(
            customer=await self._resolve(customer, plan),
            vat_types=[await self._resolve(v, plan) for v in vats],
            accounts=[await self._resolve(a, plan) for a in accounts],
            currency=await self._resolve(currency, plan) if currency else None,
        )

    async def _resolve(self, lookup: Lookup, plan: Plan) -> Any:
        """Uni's ID of what ``lookup`` names (a preview names it instead)."""
        return await plan.reference(f"ID of {lookup.what}", partial(self._lookup, lookup))

    async def _lookup(self, lookup: Lookup) -> Any:
        cache_key = (lookup.collection, lookup.odata_filter)
        if cache_key in self._ids:
            return self._ids[cache_key]
        found = await self._client.find_one(lookup.collection, lookup.odata_filter)
        if found is None or found.get("ID") is None:
            if lookup.collection == "customers":
                # Usually the customer's own message is still on its way (or in retry): wait for it.
                raise DependencyMissing(lookup.what, "Uni Economy")
            raise MappingError(f"{lookup.what} does not exist in this Uni Economy company — {lookup.fix}")
        if lookup.cacheable:
            self._ids[cache_key] = found["ID"]
        return found["ID"]
