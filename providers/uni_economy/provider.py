"""The Uni Economy (Unimicro) provider: customers, suppliers, projects and invoices under /api/biz."""

from __future__ import annotations

from typing import Any

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
from providers.errors import DependencyMissing, MappingError, NotSupported, TransientError
from providers.http import redact_headers
from providers.uni_economy import inbound, mapping
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

    def __init__(self, spec: ConnectionSpec, http: aiohttp.ClientSession) -> None:
        super().__init__(spec, http)
        self._client = UniClient(spec, http)
        self._ids: dict[tuple[str, str], Any] = {}

    async def push(self, change: OutboundChange) -> PushResult:
        if change.action is Action.deleted:
            return await self._delete(change)
        record = change.record
        if record is None:
            raise MappingError(f"{change.entity}.{change.action} for {change.cw_id} carries no record")
        if isinstance(record, Invoice):
            return await self._push_invoice(change, record)
        kind = KINDS[change.entity]
        lookup = _project_customer(record) if isinstance(record, Project) else None
        payload = _party_payload(record, await self._resolve(lookup) if lookup else None)
        key = mapping.key_filter(kind, mapping.natural_key(record))
        existing = await self._existing(kind, change.known_external_id, key)
        outcome, entity = await self._write(kind, payload, existing)
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

    def preview(self, change: OutboundChange) -> list[PreparedRequest]:
        kind = KINDS[change.entity]
        headers = redact_headers(self._client.headers("<token>"))
        url = f"{self._client.api_url}/{kind.collection}"
        if change.action is Action.deleted:
            return [PreparedRequest("DELETE", f"{url}/{change.known_external_id or '{ID}'}", headers)]
        record = change.record
        if record is None:
            raise MappingError(f"{change.entity}.{change.action} for {change.cw_id} carries no record")
        if not isinstance(record, Invoice):
            lookup = _project_customer(record) if isinstance(record, Project) else None
            customer = f"<ID of {lookup.what}>" if lookup else None
            return [PreparedRequest("POST", url, headers, _party_payload(record, customer))]
        return self._invoice_preview(record, url, headers)

    def _invoice_preview(self, record: Invoice, url: str, headers: dict[str, str]) -> list[PreparedRequest]:
        customer, vats, accounts, currency = self._lookups(record)
        # Ids Uni assigns are looked up by push; a preview sends nothing, so it names them instead.
        ids = InvoiceIds(
            customer=f"<ID of {customer.what}>",
            vat_types=[f"<ID of {v.what}>" for v in vats],
            accounts=[f"<ID of {a.what}>" for a in accounts],
            currency=f"<ID of {currency.what}>" if currency else None,
        )
        payload = mapping.invoice_payload(record, ids, self.settings)
        requests = [PreparedRequest("POST", url, headers, payload)]
        if self.settings.flag("finalise_invoices"):
            requests.append(PreparedRequest("POST", f"{url}/{{ID}}?action=invoice", headers))
        return requests

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
        self, kind: EntityKind, payload: dict[str, Any], existing: dict[str, Any] | None
    ) -> tuple[str, Any]:
        if existing is None:
            return "created", await self._client.request("POST", f"/{kind.collection}", json_body=payload)
        if mapping.already_holds(existing, payload):
            return "unchanged", existing
        body = mapping.with_ids(payload, existing)
        return "updated", await self._client.request(
            "PUT", f"/{kind.collection}/{existing['ID']}", json_body=body
        )

    async def _delete(self, change: OutboundChange) -> PushResult:
        kind = KINDS[change.entity]
        existing = await self._existing(kind, change.known_external_id, self._delete_key(change, kind))
        if existing is None:
            return PushResult("unchanged", None)  # nothing of ours is there: already as we want it
        if change.entity is Entity.invoice and not mapping.is_draft(existing):
            raise NotSupported(
                f"invoice {change.cw_id} is already invoiced in Uni Economy "
                f"(number {existing.get('InvoiceNumber')}); only drafts can be deleted — credit it in Uni"
            )
        await self._client.request("DELETE", f"/{kind.collection}/{existing['ID']}", missing_ok=True)
        return PushResult("deleted", str(existing["ID"]))

    def _delete_key(self, change: OutboundChange, kind: EntityKind) -> str | None:
        if change.entity is Entity.invoice:
            return mapping.key_filter(kind, mapping.invoice_marker(change.cw_id))
        record = change.record
        if isinstance(record, Customer | Supplier | Project):
            return mapping.key_filter(kind, mapping.natural_key(record))
        return None

    async def _push_invoice(self, change: OutboundChange, invoice: Invoice) -> PushResult:
        settings = self.settings
        for unsupported in ("send_invoices", "release_invoices"):
            if settings.flag(unsupported):
                raise MappingError(
                    f"{self.kind} has no {unsupported.removesuffix('_invoices')} step for invoices (Uni "
                    "distributes finalised invoices by the company's own plan): remove setting "
                    f"{unsupported} and use finalise_invoices=true"
                )
        payload = mapping.invoice_payload(invoice, await self._invoice_ids(invoice), settings)
        kind = KINDS[Entity.invoice]
        key = mapping.key_filter(kind, mapping.invoice_marker(invoice.id))
        existing = await self._existing(kind, change.known_external_id, key)
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
        outcome, entity = await self._write(kind, payload, existing)
        if settings.flag("finalise_invoices") and isinstance(entity, dict) and mapping.is_draft(entity):
            entity = await self._finalise(entity)
            outcome = "updated" if outcome == "unchanged" else outcome
        return _result(outcome, entity, payload)

    async def _finalise(self, draft: dict[str, Any]) -> Any:
        path = f"/invoices/{draft['ID']}"
        await self._client.request("POST", path, params={"action": "invoice"})
        # The transition's answer is undocumented ({} in the spec): read the invoice back for its state.
        return await self._client.request("GET", path, params={"expand": "Items"})

    def _lookups(self, invoice: Invoice) -> tuple[Lookup, list[Lookup], list[Lookup], Lookup | None]:
        return mapping.invoice_lookups(invoice, self.settings)

    async def _invoice_ids(self, invoice: Invoice) -> InvoiceIds:
        customer, vats, accounts, currency = self._lookups(invoice)
        return InvoiceIds(
            customer=await self._resolve(customer),
            vat_types=[await self._resolve(v) for v in vats],
            accounts=[await self._resolve(a) for a in accounts],
            currency=await self._resolve(currency) if currency else None,
        )

    async def _resolve(self, lookup: Lookup) -> Any:
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
