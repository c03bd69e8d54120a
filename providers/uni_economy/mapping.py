"""CW records → Uni Economy payloads (field names from the Customer, Supplier, Project and
CustomerInvoice definitions of uni-economy-2019.swagger2.json), plus the per-client settings. The
way back (Uni → CW) is ``providers.uni_economy.inbound``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from contracts import Address, Customer, Entity, Invoice, InvoiceLine, Project, Supplier
from providers.errors import MappingError
from providers.settings import VAT_PREFIX, SettingsReader, rate_text

INVOICE_MARKER_PREFIX = "cw-invoice:"
# CustomerInvoice.StatusCode values are not in the spec; 42001 is Uni's "Draft" status.
DRAFT_STATUS = 42001


@dataclass(frozen=True, slots=True)
class EntityKind:
    """Where an entity lives under /api/biz and how its natural key is filtered."""

    collection: str
    key_field: str
    expand: str


PARTY_EXPAND = "Info,Info.DefaultEmail,Info.DefaultPhone,Info.InvoiceAddress"
KINDS: Mapping[Entity, EntityKind] = {
    Entity.customer: EntityKind("customers", "CustomerNumber", PARTY_EXPAND),
    Entity.supplier: EntityKind("suppliers", "SupplierNumber", PARTY_EXPAND),
    Entity.project: EntityKind("projects", "ProjectNumber", ""),
    # No external-id field on CustomerInvoice: the CW id goes into InternalNote (see invoice_marker).
    Entity.invoice: EntityKind("invoices", "InternalNote", "Items"),
}


def odata_literal(value: str | int) -> str:
    if isinstance(value, int):
        return str(value)
    return "'" + value.replace("'", "''") + "'"


def key_filter(kind: EntityKind, value: str | int) -> str:
    return f"{kind.key_field} eq {odata_literal(value)}"


def whole_number(value: str, what: str) -> int:
    """Uni's CustomerNumber/SupplierNumber/AccountNumber are integers; CW numbers are strings."""
    if not value.isdigit():
        raise MappingError(
            f"{what} {value!r} is not a whole number, and Uni Economy numbers it with integers"
        )
    return int(value)


def _address(address: Address) -> dict[str, Any]:
    return {
        "AddressLine1": address.street,
        "PostalCode": address.postal_code,
        "City": address.city,
        "CountryCode": address.country,
    }


def _info(name: str, email: str | None, phone: str | None, address: Address | None) -> dict[str, Any]:
    """The BusinessRelation behind a customer or supplier: name, default e-mail/phone, invoice address."""
    info: dict[str, Any] = {"Name": name}
    if email:
        info["DefaultEmail"] = {"EmailAddress": email}
    if phone:
        info["DefaultPhone"] = {"Number": phone}
    if address is not None:
        info["InvoiceAddress"] = _address(address)
    return info


def customer_payload(customer: Customer) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "CustomerNumber": whole_number(customer.number, "customer number"),
        "Info": _info(customer.name, customer.email, customer.phone, customer.address),
    }
    if customer.org_number:
        payload["OrgNumber"] = customer.org_number
    return payload


def supplier_payload(supplier: Supplier) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "SupplierNumber": whole_number(supplier.number, "supplier number"),
        "Info": _info(supplier.name, supplier.email, None, supplier.address),
    }
    if supplier.org_number:
        payload["OrgNumber"] = supplier.org_number
    return payload


def project_payload(project: Project, customer_id: Any = None) -> dict[str, Any]:
    """``customer_id`` is Uni's ID of the project's customer, looked up by ``customer_number``.

    Without a customer number the project stays unlinked: Uni does not know CW's customer id.
    """
    payload: dict[str, Any] = {
        "ProjectNumber": project.number,
        "Name": project.name,
        "StartDate": project.start_date.isoformat(),
    }
    if customer_id is not None:
        payload["ProjectCustomerID"] = customer_id
    if project.end_date is not None:
        payload["EndDate"] = project.end_date.isoformat()
    return payload


def natural_key(record: Customer | Supplier | Project) -> str | int:
    if isinstance(record, Project):
        return record.number
    return whole_number(record.number, f"{type(record).__name__.lower()} number")


def invoice_marker(cw_id: str) -> str:
    """What InternalNote holds: OurReference/YourReference are printed for the buyer (YourReference
    carries CW's ``reference``), while InternalNote is the one text field Uni keeps off the invoice."""
    return INVOICE_MARKER_PREFIX + cw_id


def vat_code(rate: Decimal, settings: SettingsReader) -> tuple[str, str]:
    """(setting name, Uni VatCode) for a rate; settings ``vat_code.25`` and ``vat_code.25.00`` both match."""
    return f"{VAT_PREFIX}{rate_text(rate)}", settings.vat_code(rate)


def revenue_account(line: InvoiceLine, settings: SettingsReader) -> tuple[str, str]:
    """(where it came from, account number) for a line: its own account, else setting revenue_account."""
    if line.account:
        return "the invoice line's account", line.account
    account = settings.text("revenue_account")
    if not account:
        raise MappingError(
            "invoice line has no account and there is no default — add setting revenue_account "
            f"({settings.command('revenue_account')})"
        )
    return "setting revenue_account", account


@dataclass(frozen=True, slots=True)
class InvoiceIds:
    """Uni's own ids that an invoice refers to, looked up by the provider (or placeholders in a preview)."""

    customer: Any
    vat_types: list[Any]
    accounts: list[Any]
    currency: Any = None


def department_id(settings: SettingsReader) -> int | None:
    return settings.integer("department_id")


def _item(line: InvoiceLine, index: int, vat_type: Any, account: Any, foreign: bool, dept: int | None) -> Any:
    price_field = "PriceExVatCurrency" if foreign else "PriceExVat"
    item: dict[str, Any] = {
        "SortIndex": index,
        "ItemText": line.description,
        "NumberOfItems": float(line.quantity),
        price_field: float(line.unit_price),
        "VatTypeID": vat_type,
        "AccountID": account,
    }
    if dept is not None:
        item["Dimensions"] = {"DepartmentID": dept}
    return item


def invoice_payload(invoice: Invoice, ids: InvoiceIds, settings: SettingsReader) -> dict[str, Any]:
    """A draft CustomerInvoice. Prices go in PriceExVatCurrency when the invoice is not in base currency."""
    dept = department_id(settings)
    foreign = ids.currency is not None
    payload: dict[str, Any] = {
        "CustomerID": ids.customer,
        "InvoiceDate": invoice.invoice_date.isoformat(),
        "PaymentDueDate": invoice.due_date.isoformat(),
        "InternalNote": invoice_marker(invoice.id),
        "Items": [
            _item(line, i, vat, acc, foreign, dept)
            for i, (line, vat, acc) in enumerate(
                zip(invoice.lines, ids.vat_types, ids.accounts, strict=True), 1
            )
        ],
    }
    if invoice.reference:
        payload["YourReference"] = invoice.reference
    if foreign:
        payload["CurrencyCodeID"] = ids.currency
    if dept is not None:
        payload["DefaultDimensions"] = {"DepartmentID": dept}
    return payload


def is_draft(invoice: Mapping[str, Any]) -> bool:
    return invoice.get("StatusCode") in (None, DRAFT_STATUS)


def already_holds(existing: Any, wanted: Any) -> bool:
    """True when every field we would write already has that value in Uni (Uni adds many of its own)."""
    if isinstance(wanted, dict):
        return isinstance(existing, dict) and all(
            already_holds(existing.get(k), v) for k, v in wanted.items()
        )
    if isinstance(wanted, list):
        return (
            isinstance(existing, list)
            and len(existing) == len(wanted)
            and all(already_holds(e, w) for e, w in zip(existing, wanted, strict=True))
        )
    if isinstance(wanted, str) and isinstance(existing, str):
        return existing == wanted or existing.startswith(wanted + "T")  # dates may come back as date-times
    if isinstance(wanted, int | float) and not isinstance(wanted, bool):
        return isinstance(existing, int | float) and float(existing) == float(wanted)
    return bool(existing == wanted)


def with_ids(payload: Mapping[str, Any], existing: Mapping[str, Any]) -> dict[str, Any]:
    """The payload for a PUT: Uni creates a new nested object for every one without an ID, so carry the
    IDs of what exists over, and mark existing list items we no longer want as Deleted."""
    out = dict(payload)
    if "ID" in existing:
        out["ID"] = existing["ID"]
    for key, value in payload.items():
        old = existing.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            out[key] = with_ids(value, old)
        elif isinstance(value, list) and isinstance(old, list):
            out[key] = _merge_items(value, old)
    return out


def _merge_items(new: list[Any], old: list[Any]) -> list[Any]:
    pairs = zip(new, old, strict=False)  # the lists differ in length when lines were added or removed
    merged = [with_ids(n, o) if isinstance(n, dict) and isinstance(o, dict) else n for n, o in pairs]
    merged += new[len(old) :]
    merged += [{"ID": o["ID"], "Deleted": True} for o in old[len(new) :] if isinstance(o, dict) and "ID" in o]
    return merged


@dataclass(frozen=True, slots=True)
class Lookup:
    """One id Uni assigned that a payload needs, found with ``filter=`` on a collection."""

    collection: str
    odata_filter: str
    what: str
    fix: str
    cacheable: bool = True  # VAT types, accounts and currencies do not move; customers might


def invoice_lookups(
    invoice: Invoice, settings: SettingsReader
) -> tuple[Lookup, list[Lookup], list[Lookup], Lookup | None]:
    """What must be looked up before an invoice can be written: customer, VAT types, accounts, currency.

    Settings hold what an accountant knows (VAT code "3", account 3000); the payload needs Uni's ids.
    """
    customer = Lookup(
        "customers",
        f"CustomerNumber eq {whole_number(invoice.customer_number, 'customer number')}",
        f"customer number {invoice.customer_number}",
        "push the customer first, then replay this message",
        cacheable=False,
    )
    vat_types = []
    for line in invoice.lines:
        setting, code = vat_code(line.vat_rate, settings)
        vat_types.append(
            Lookup(
                "vattypes",
                f"VatCode eq {odata_literal(code)}",
                f"VAT code {code!r} (setting {setting})",
                f"correct setting {setting} ({settings.command(setting)})",
            )
        )
    accounts = []
    for line in invoice.lines:
        source, number = revenue_account(line, settings)
        accounts.append(
            Lookup(
                "accounts",
                f"AccountNumber eq {whole_number(number, 'account')}",
                f"account {number} ({source})",
                "use an account number of this Uni company's chart of accounts",
            )
        )
    return customer, vat_types, accounts, _currency_lookup(invoice, settings)


def base_currency(settings: SettingsReader) -> str:
    return settings.text("base_currency") or "NOK"


def _currency_lookup(invoice: Invoice, settings: SettingsReader) -> Lookup | None:
    base = base_currency(settings)
    if invoice.currency == base:
        return None
    return Lookup(
        "currencycodes",
        f"Code eq {odata_literal(invoice.currency)}",
        f"currency {invoice.currency}",
        f"if {invoice.currency} is the company's own currency, set base_currency "
        f"({settings.command('base_currency')})",
    )
