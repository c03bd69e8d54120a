"""Uni Economy → CW (the inbound path): Uni entities as ``FETCH_EXPAND`` reads them → CW drafts."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from contracts import Entity
from providers.base import CWDraft, CWReference
from providers.errors import MappingError
from providers.reading import cw_address
from providers.reading import nested as _nested
from providers.reading import text as _text
from providers.settings import SettingsReader
from providers.uni_economy.mapping import PARTY_EXPAND, base_currency
from providers.vendor import readers

FETCH_EXPAND: Mapping[Entity, str] = {
    Entity.customer: PARTY_EXPAND,
    Entity.supplier: PARTY_EXPAND,
    Entity.project: "ProjectCustomer",
    Entity.invoice: "Items,Items.VatType,Items.Account,Customer,CurrencyCode",
}
"""What ``fetch`` expands per entity: every object ``to_cw`` reads."""


def stamp(entity: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(version, author) of an entity as Uni holds it: its last change, else its creation."""
    version = entity.get("UpdatedAt") or entity.get("CreatedAt")
    author = entity.get("UpdatedBy") or entity.get("CreatedBy")
    return (str(version) if version else None, str(author) if author else None)


def _required(value: Mapping[str, Any], what: str, *path: str) -> str:
    found = _text(_nested(value, *path))
    if found is None:
        raise MappingError(f"Uni Economy {what} {value.get('ID')} has no {'.'.join(path)}, which CW requires")
    return found


def _day(value: Mapping[str, Any], what: str, key: str) -> str:
    """Uni may send a date as a date-time; CW wants the day."""
    return _required(value, what, key)[:10]


def _cw_address(value: Mapping[str, Any], what: str) -> dict[str, str] | None:
    address = _nested(value, "Info", "InvoiceAddress")
    if not isinstance(address, dict):
        return None
    names = {"street": "AddressLine1", "postal_code": "PostalCode", "city": "City", "country": "CountryCode"}
    parts = {cw: _text(address.get(uni)) for cw, uni in names.items()}
    # None also for a country code alone: that is Uni's default, not an address.
    return cw_address(parts, f"Uni Economy {what} {value.get('ID')} has an invoice address", names)


def _party_fields(value: Mapping[str, Any], what: str, number_key: str) -> dict[str, Any]:
    return {
        "number": _required(value, what, number_key),
        "name": _required(value, what, "Info", "Name"),
        "org_number": _text(value.get("OrgNumber")),
        "email": _text(_nested(value, "Info", "DefaultEmail", "EmailAddress")),
        "address": _cw_address(value, what),
    }


def customer_fields(value: Mapping[str, Any], settings: SettingsReader) -> CWDraft:
    phone = _text(_nested(value, "Info", "DefaultPhone", "Number"))
    return CWDraft({**_party_fields(value, "customer", "CustomerNumber"), "phone": phone})


def supplier_fields(value: Mapping[str, Any], settings: SettingsReader) -> CWDraft:
    return CWDraft(_party_fields(value, "supplier", "SupplierNumber"))


def _customer(value: Mapping[str, Any], *id_fields: str) -> tuple[CWReference, ...]:
    """CW's ``customer_id``, resolved by the worker from Uni's customer ID (the first field set)."""
    found = next((value.get(name) for name in id_fields if value.get(name) is not None), None)
    return () if found is None else (CWReference("customer_id", Entity.customer, str(found)),)


def project_fields(value: Mapping[str, Any], settings: SettingsReader) -> CWDraft:
    """CW's ``customer_id`` is CW's own id: a reference the worker resolves from Uni's customer ID."""
    end = _text(value.get("EndDate"))
    fields = {
        "number": _required(value, "project", "ProjectNumber"),
        "name": _required(value, "project", "Name"),
        "customer_number": _required(value, "project", "ProjectCustomer", "CustomerNumber"),
        "start_date": _day(value, "project", "StartDate"),
        "end_date": end[:10] if end else None,
    }
    return CWDraft(fields, _customer(value, "ProjectCustomerID"))


def _decimal_text(value: Any) -> str:
    return str(Decimal(str(value if value is not None else 0)))


def _cw_line(item: Mapping[str, Any], foreign: bool) -> dict[str, Any]:
    price = item.get("PriceExVatCurrency") if foreign else item.get("PriceExVat")
    percent = _nested(item, "VatType", "VatPercent")
    if percent is None:
        percent = item.get("VatPercent")
    return {
        "description": _required(item, "invoice line", "ItemText"),
        "quantity": _decimal_text(item.get("NumberOfItems")),
        "unit_price": _decimal_text(price),
        "vat_rate": f"{Decimal(str(percent if percent is not None else 0)).normalize():f}",
        "account": _text(_nested(item, "Account", "AccountNumber")),
    }


def invoice_fields(value: Mapping[str, Any], settings: SettingsReader) -> CWDraft:
    """Uni numbers invoices itself when they are invoiced: CW gets Uni's InvoiceNumber, so a draft
    (no number yet) cannot be mapped."""
    number = _text(value.get("InvoiceNumber"))
    if number is None:
        raise MappingError(
            f"Uni Economy invoice {value.get('ID')} is a draft without an InvoiceNumber; "
            "CW takes an invoice once Uni has numbered it"
        )
    currency = _text(_nested(value, "CurrencyCode", "Code"))
    items = sorted(
        (i for i in value.get("Items") or [] if isinstance(i, dict) and not i.get("Deleted")),
        key=lambda i: int(i.get("SortIndex") or 0),
    )
    fields = {
        "number": number,
        "customer_number": _required(value, "invoice", "Customer", "CustomerNumber"),
        "invoice_date": _day(value, "invoice", "InvoiceDate"),
        "due_date": _day(value, "invoice", "PaymentDueDate"),
        "currency": currency or base_currency(settings),
        "lines": [_cw_line(item, currency is not None) for item in items],
        "reference": _text(value.get("YourReference")),
    }
    return CWDraft(fields, _customer(value, "CustomerID"))


READERS = readers(customer_fields, supplier_fields, project_fields, invoice_fields)
