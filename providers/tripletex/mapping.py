"""CW records → Tripletex request bodies, with the per-client settings they need.

Reference ids (customer, country) are resolved by the provider and passed in; in a preview they are
placeholder strings, which is why ``Ref`` admits ``str``. At the end, the way back for the inbound
path: Tripletex objects (as ``FETCH_FIELDS`` asks for them) → CW record fields.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from contracts import Address, Customer, Entity, Invoice, InvoiceLine, Project, Supplier
from providers.base import CWDraft, CWReference
from providers.errors import MappingError, NotSupported
from providers.reading import cw_address
from providers.reading import text as _text
from providers.settings import SettingsReader, rate_text
from providers.vendor import readers

Ref = int | str
Payload = dict[str, Any]
SUBSCRIPTIONS = "/event/subscription"
INVOICE_LOOKUP_WINDOW = dt.timedelta(days=366)
"""Orders and invoices are searched this far either side of the CW invoice date."""


VAT_WHAT = "the id of a Tripletex vatType (GET /ledger/vatType)"


def vat_type(settings: SettingsReader, rate: Decimal) -> int:
    """The Tripletex vatType id of a rate: setting ``vat_code.<rate>``, a whole number."""
    code = settings.vat_code(rate, VAT_WHAT)
    if not code.strip().isdigit():
        name = f"vat_code.{rate_text(rate)}"
        raise settings.fix(name, f"{code!r} is not a Tripletex id (a whole number)")
    return int(code)


def currency(settings: SettingsReader) -> str:
    """The company currency orders are written in (setting ``currency``, default NOK)."""
    return (settings.text("currency") or "NOK").upper()


def _number(value: str, what: str) -> int:
    """Tripletex customer and supplier numbers are integers; CW's are strings."""
    if not value.isdigit():
        raise MappingError(f"{what} {value!r} is not a whole number, and Tripletex numbers are integers")
    return int(value)


def _address(address: Address, country_ids: Mapping[str, Ref]) -> Payload:
    return {
        "addressLine1": address.street,
        "postalCode": address.postal_code,
        "city": address.city,
        "country": {"id": country_ids[address.country]},
    }


def countries_of(record: Customer | Supplier) -> set[str]:
    """ISO codes whose Tripletex country ids the mapping needs."""
    return {record.address.country} if record.address else set()


def customer_payload(customer: Customer, settings: SettingsReader, country_ids: Mapping[str, Ref]) -> Payload:
    # Empty strings, not omissions: PUT is a partial update, so a field cleared in CW must be sent.
    body: Payload = {
        "name": customer.name,
        "customerNumber": _number(customer.number, "customer number"),
        "organizationNumber": customer.org_number or "",
        "email": customer.email or "",
        "invoiceEmail": customer.email or "",
        "phoneNumber": customer.phone or "",
    }
    if customer.address:
        body["postalAddress"] = _address(customer.address, country_ids)
    if (department := settings.integer("department_id")) is not None:
        body["department"] = {"id": department}
    return body


def supplier_payload(supplier: Supplier, country_ids: Mapping[str, Ref]) -> Payload:
    body: Payload = {
        "name": supplier.name,
        "supplierNumber": _number(supplier.number, "supplier number"),
        "organizationNumber": supplier.org_number or "",
        "email": supplier.email or "",
    }
    if supplier.address:
        body["postalAddress"] = _address(supplier.address, country_ids)
    return body


def project_customer_number(project: Project) -> str:
    """The customer number to look the project's customer up by.

    Older producers send only the customer's CW id; then the id is taken to be the customer number
    (a lookup that finds nothing is a MappingError).
    """
    return project.customer_number or project.customer_id


def project_payload(project: Project, settings: SettingsReader, customer_id: Ref) -> Payload:
    manager = settings.integer("project_manager_id")
    if manager is None:
        raise MappingError(
            "Tripletex projects need a project manager — add setting project_manager_id "
            f"({settings.command('project_manager_id')}), the Tripletex employee id"
        )
    body: Payload = {
        "name": project.name,
        "number": project.number,
        "projectManager": {"id": manager},
        "customer": {"id": customer_id},
        "startDate": project.start_date.isoformat(),
    }
    if project.end_date:
        body["endDate"] = project.end_date.isoformat()
    if (department := settings.integer("department_id")) is not None:
        body["department"] = {"id": department}
    return body


def _order_line(line: InvoiceLine, settings: SettingsReader) -> Payload:
    # OrderLine has no account in the spec: Tripletex books revenue by product and VAT type, so
    # line.account and a revenue_account setting have nowhere to go.
    return {
        "description": line.description,
        "count": float(line.quantity),
        "unitPriceExcludingVatCurrency": float(line.unit_price),
        "vatType": {"id": vat_type(settings, line.vat_rate)},
    }


def order_payload(invoice: Invoice, settings: SettingsReader, customer_id: Ref) -> Payload:
    if invoice.currency != currency(settings):
        # The spec marks Currency read-only at object level, so an order cannot name one.
        raise NotSupported(
            f"invoice {invoice.number} is in {invoice.currency}, but orders are written in the company "
            f"currency {currency(settings)} (setting currency); Tripletex's API takes no order currency"
        )
    body: Payload = {
        "customer": {"id": customer_id},
        "number": invoice.number,
        "orderDate": invoice.invoice_date.isoformat(),
        "deliveryDate": invoice.invoice_date.isoformat(),
        "invoicesDueIn": (invoice.due_date - invoice.invoice_date).days,
        "invoicesDueInType": "DAYS",
        "orderLines": [_order_line(line, settings) for line in invoice.lines],
    }
    if invoice.reference:
        body["reference"] = invoice.reference
    if (department := settings.integer("department_id")) is not None:
        body["department"] = {"id": department}
    return body


def invoice_params(invoice: Invoice, settings: SettingsReader) -> dict[str, str]:
    """Query of ``PUT /order/{id}/:invoice``; sendToCustomer defaults to true there, so say false."""
    return {
        "invoiceDate": invoice.invoice_date.isoformat(),
        "sendToCustomer": "true" if settings.flag("send_invoices") else "false",
    }


def lookup_window(invoice: Invoice) -> tuple[str, str]:
    """``(from, to)`` for the date ranges Tripletex requires on order and invoice searches."""
    start = invoice.invoice_date - INVOICE_LOOKUP_WINDOW
    end = invoice.invoice_date + INVOICE_LOOKUP_WINDOW
    return start.isoformat(), end.isoformat()


def _line_key(line: Mapping[str, Any]) -> tuple[str, Decimal, Decimal, str]:
    vat = line.get("vatType") or {}
    return (
        str(line.get("description") or ""),
        Decimal(str(line.get("count") or 0)),
        Decimal(str(line.get("unitPriceExcludingVatCurrency") or 0)),
        str(vat.get("id")),
    )


def order_matches(order: Mapping[str, Any], payload: Payload) -> bool:
    """Does an order already in Tripletex say what ``payload`` says (for an invoiced order)?"""
    if (order.get("customer") or {}).get("id") != payload["customer"]["id"]:
        return False
    if order.get("orderDate") != payload["orderDate"]:
        return False
    # What only the invoice's head says (its reference, when it falls due) counts too: a charged
    # invoice differing only there must not be taken for unchanged.
    if (order.get("reference") or None) != payload.get("reference"):
        return False
    if order.get("invoicesDueIn") != payload["invoicesDueIn"]:
        return False
    ours = sorted(_line_key(line) for line in payload["orderLines"])
    theirs = sorted(_line_key(line) for line in order.get("orderLines") or [] if isinstance(line, dict))
    return ours == theirs


# -- Tripletex → CW (the inbound path) ---------------------------------------------------------

FETCH_FIELDS = {
    "customer": (
        "id,version,name,customerNumber,organizationNumber,email,phoneNumber,"
        "postalAddress(addressLine1,postalCode,city,country(isoAlpha2Code)),changes(employeeId,timestamp)"
    ),
    "supplier": (
        "id,version,name,supplierNumber,organizationNumber,email,"
        "postalAddress(addressLine1,postalCode,city,country(isoAlpha2Code)),changes(employeeId,timestamp)"
    ),
    "project": (
        "id,version,name,number,startDate,endDate,customer(id,customerNumber),changes(employeeId,timestamp)"
    ),
    "invoice": (
        "id,version,invoiceDate,invoiceDueDate,currency(code),customer(id,customerNumber),"
        "orders(number,reference,orderLines(description,count,unitPriceExcludingVatCurrency,vatType(id))),"
        "changes(employeeId,timestamp)"
    ),
}
"""What ``fetch`` asks for per entity: every field ``to_cw`` reads, references with their numbers."""


def last_change_time(value: Mapping[str, Any]) -> str | None:
    """When the latest change was made (``changes`` is oldest first)."""
    changes = [c for c in value.get("changes") or [] if isinstance(c, dict) and c.get("timestamp")]
    return str(changes[-1]["timestamp"]) if changes else None


def last_author(value: Mapping[str, Any]) -> str | None:
    """The employee behind the latest change (``changes`` is oldest first)."""
    changes = [c for c in value.get("changes") or [] if isinstance(c, dict) and c.get("employeeId")]
    return str(changes[-1]["employeeId"]) if changes else None


def _required(value: Mapping[str, Any], key: str, what: str) -> str:
    found = _text(value.get(key))
    if found is None:
        raise MappingError(f"Tripletex {what} {value.get('id')} has no {key}, which CW requires")
    return found


def _cw_address(value: Mapping[str, Any], what: str) -> dict[str, str] | None:
    address = value.get("postalAddress")
    if not isinstance(address, dict):
        return None
    parts = {
        "street": _text(address.get("addressLine1")),
        "postal_code": _text(address.get("postalCode")),
        "city": _text(address.get("city")),
        "country": _text((address.get("country") or {}).get("isoAlpha2Code")),
    }
    # None also for the empty address object Tripletex keeps on every customer.
    return cw_address(parts, f"Tripletex {what} {value.get('id')} has a postal address")


def _party_fields(value: Mapping[str, Any], what: str, number_key: str) -> dict[str, Any]:
    return {
        "number": _required(value, number_key, what),
        "name": _required(value, "name", what),
        "org_number": _text(value.get("organizationNumber")),
        "email": _text(value.get("email")),
        "address": _cw_address(value, what),
    }


def _customer_reference(value: Mapping[str, Any]) -> tuple[CWReference, ...]:
    """CW's ``customer_id``, resolved by the worker from Tripletex's customer id."""
    customer_id = (value.get("customer") or {}).get("id")
    return () if customer_id is None else (CWReference("customer_id", Entity.customer, str(customer_id)),)


def customer_fields(value: Mapping[str, Any], settings: SettingsReader) -> CWDraft:
    fields = _party_fields(value, "customer", "customerNumber")
    return CWDraft({**fields, "phone": _text(value.get("phoneNumber"))})


def supplier_fields(value: Mapping[str, Any], settings: SettingsReader) -> CWDraft:
    return CWDraft(_party_fields(value, "supplier", "supplierNumber"))


def _customer_number(value: Mapping[str, Any], what: str) -> str:
    number = _text((value.get("customer") or {}).get("customerNumber"))
    if number is None:
        raise MappingError(f"Tripletex {what} {value.get('id')} names no customer (customer.customerNumber)")
    return number


def project_fields(value: Mapping[str, Any], settings: SettingsReader) -> CWDraft:
    """CW's ``customer_id`` is CW's own id: a reference the worker resolves from the customer's id."""
    fields = {
        "number": _required(value, "number", "project"),
        "name": _required(value, "name", "project"),
        "customer_number": _customer_number(value, "project"),
        "start_date": _required(value, "startDate", "project"),
        "end_date": _text(value.get("endDate")),
    }
    return CWDraft(fields, _customer_reference(value))


def _cw_line(line: Mapping[str, Any], settings: SettingsReader) -> dict[str, Any]:
    vat_id = (line.get("vatType") or {}).get("id")
    return {
        "description": str(line.get("description") or ""),
        "quantity": str(Decimal(str(line.get("count") or 0))),
        "unit_price": str(Decimal(str(line.get("unitPriceExcludingVatCurrency") or 0))),
        "vat_rate": settings.vat_rate(None if vat_id is None else str(vat_id), "Tripletex vatType"),
    }


def invoice_fields(value: Mapping[str, Any], settings: SettingsReader) -> CWDraft:
    """An invoice is its order: CW's invoice number is the order number (see ``order_payload``)."""
    orders = [o for o in value.get("orders") or [] if isinstance(o, dict)]
    if len(orders) != 1:
        raise MappingError(
            f"Tripletex invoice {value.get('id')} was made from {len(orders)} orders; CW invoices map to one"
        )
    order = orders[0]
    lines = [line for line in order.get("orderLines") or [] if isinstance(line, dict)]
    fields = {
        "number": _required(order, "number", "order"),
        "customer_number": _customer_number(value, "invoice"),
        "invoice_date": _required(value, "invoiceDate", "invoice"),
        "due_date": _required(value, "invoiceDueDate", "invoice"),
        "currency": _text((value.get("currency") or {}).get("code")) or currency(settings),
        "lines": [_cw_line(line, settings) for line in lines],
        "reference": _text(order.get("reference")),
    }
    return CWDraft(fields, _customer_reference(value))


READERS = readers(customer_fields, supplier_fields, project_fields, invoice_fields)
