"""CW records → Visma.net ERP request bodies (``CustomerUpdateDto`` etc.), per-client settings.

Every field is wrapped as ``{"value": …}``. Fields CW leaves empty are left out rather than
cleared: the DTOs' values are not nullable. Dates go as ``YYYY-MM-DDT00:00:00`` without an offset,
so Visma reads them as the company's calendar day (an offset could move the day). At the end, the
way back for the inbound path: read DTOs (``CustomerDto`` …, values not wrapped) → CW fields.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from contracts import Address, Customer, Entity, Invoice, InvoiceLine, Project, Supplier
from providers.base import CWDraft, CWReference
from providers.errors import MappingError
from providers.reading import cw_address
from providers.reading import nested as _nested
from providers.reading import text as _text
from providers.settings import SettingsReader
from providers.vendor import readers

JsonObject = dict[str, Any]


def wrap(value: Any) -> JsonObject:
    return {"value": value}


def _date(day: dt.date) -> str:
    return f"{day.isoformat()}T00:00:00"


def _number(value: Decimal) -> float:
    # The DTOs declare ``number/double``; JSON has no decimal type.
    return float(value)


def _address(address: Address) -> JsonObject:
    return {
        "addressLine1": wrap(address.street),
        "postalCode": wrap(address.postal_code),
        "city": wrap(address.city),
        "countryId": wrap(address.country),
    }


def _contact(name: str, email: str | None, phone: str | None) -> JsonObject:
    contact = {"name": wrap(name)}
    if email:
        contact["email"] = wrap(email)
    if phone:
        contact["phone1"] = wrap(phone)
    return contact


def _party(record: Customer | Supplier, phone: str | None) -> JsonObject:
    body: JsonObject = {"number": wrap(record.number), "name": wrap(record.name)}
    if record.org_number:
        body["corporateId"] = wrap(record.org_number)
    if record.email or phone:
        body["mainContact"] = wrap(_contact(record.name, record.email, phone))
    if record.address:
        body["mainAddress"] = wrap(_address(record.address))
    return body


def customer_body(customer: Customer, settings: SettingsReader) -> JsonObject:
    """``CustomerUpdateDto``; the customer number is Visma's customerCd (our natural key)."""
    body = _party(customer, customer.phone)
    if class_id := settings.text("customer_class_id"):
        body["customerClassId"] = wrap(class_id)
    return body


def supplier_body(supplier: Supplier, settings: SettingsReader) -> JsonObject:
    """``SupplierUpdateDto``; the supplier number is Visma's supplierCd."""
    body = _party(supplier, None)
    if class_id := settings.text("supplier_class_id"):
        body["supplierClassId"] = wrap(class_id)
    return body


# A create must keep our number even where the tenant numbers records automatically.
CREATE_EXTRAS: JsonObject = {"overrideNumberSeries": wrap(True)}


def _segments(raw: str, settings: SettingsReader, name: str) -> list[JsonObject]:
    """``"1:100,2:20"`` → ``[{"segmentId": 1, "segmentValue": "100"}, …]``."""
    segments = []
    for part in raw.split(","):
        segment, sep, value = part.strip().partition(":")
        if not sep or not segment.strip().isdigit() or not value.strip():
            raise MappingError(
                f"setting {name} must be segmentId:value pairs separated by commas, e.g. 1:100,2:20 "
                f"({settings.command(name)})"
            )
        segments.append({"segmentId": int(segment), "segmentValue": value.strip()})
    return segments


def project_body(project: Project, settings: SettingsReader) -> JsonObject:
    """``ProjectUpdateDto``. The spec requires ``defSub`` unless a project template is given.

    The customer is linked by ``customer_number`` (Visma's ``customer`` is the customer number);
    a record with only CW's customer id leaves the project unlinked.
    """
    body: JsonObject = {
        "projectID": wrap(project.number),
        "description": wrap(project.name),
        "startDate": wrap(_date(project.start_date)),
    }
    if project.customer_number:
        body["customer"] = wrap(project.customer_number)
    if project.end_date:
        body["endDate"] = wrap(_date(project.end_date))
    if template := settings.text("project_template"):
        body["template"] = wrap(template)
    elif subaccount := settings.text("project_subaccount"):
        body["defSub"] = _segments(subaccount, settings, "project_subaccount")
    else:
        raise MappingError(
            "Visma.net needs a project template or a default subaccount for new projects — add setting "
            f"project_template ({settings.command('project_template')}) or project_subaccount"
        )
    if branch := settings.text("branch_number"):
        body["branch"] = wrap(branch)
    return body


def _line(line: InvoiceLine, settings: SettingsReader) -> JsonObject:
    body: JsonObject = {
        "operation": "Insert",
        "description": wrap(line.description),
        "quantity": wrap(_number(line.quantity)),
        "unitPriceInCurrency": wrap(_number(line.unit_price)),
        "vatCodeId": wrap(settings.vat_code(line.vat_rate)),
    }
    account = line.account or settings.text("revenue_account")
    if account:
        body["accountNumber"] = wrap(account)
    elif not line.product_number:
        raise MappingError(
            f"invoice line {line.description!r} has no account — add setting revenue_account "
            f"({settings.command('revenue_account')})"
        )
    if line.product_number:
        body["inventoryNumber"] = wrap(line.product_number)
    return body


def invoice_body(invoice: Invoice, settings: SettingsReader) -> JsonObject:
    """``CustomerInvoiceUpdateDto`` for ``POST /v2/customerinvoice``; externalReference = CW invoice id."""
    body: JsonObject = {
        "customerNumber": wrap(invoice.customer_number),
        "documentDate": wrap(_date(invoice.invoice_date)),
        "documentDueDate": wrap(_date(invoice.due_date)),
        "externalReference": wrap(invoice.id),
        "currencyId": wrap(invoice.currency),
        "invoiceText": wrap(invoice.number),
        "invoiceLines": [_line(line, settings) for line in invoice.lines],
    }
    if invoice.reference:
        body["customerRefNumber"] = wrap(invoice.reference)
    if branch := settings.text("branch_number"):
        body["branchNumber"] = wrap(branch)
    return body


def invoice_update_body(
    invoice: Invoice, settings: SettingsReader, old_line_numbers: list[int]
) -> JsonObject:
    """The PUT body of a draft: delete its current lines, insert ours (Visma updates lines by operation)."""
    body = invoice_body(invoice, settings)
    deletes = [{"operation": "Delete", "lineNumber": wrap(number)} for number in old_line_numbers]
    body["invoiceLines"] = deletes + body["invoiceLines"]
    return body


@dataclass(frozen=True, slots=True)
class InvoicePlan:
    """What happens after an invoice is written: release it (post it), then send it by AutoInvoice."""

    release: bool
    send: bool


def invoice_plan(settings: SettingsReader) -> InvoicePlan:
    # finalise_invoices is the generic name for the same step; Visma calls it release.
    release = settings.flag("release_invoices") or settings.flag("finalise_invoices")
    send = settings.flag("send_invoices")
    if send and not release:
        raise MappingError(
            "send_invoices=true needs release_invoices=true: Visma.net sends only released invoices "
            f"({settings.command('release_invoices')})"
        )
    return InvoicePlan(release, send)


def still_holds(body: Mapping[str, Any], found: Mapping[str, Any]) -> bool:
    """Whether ``found`` (a read DTO) still holds what the write ``body`` sent, on every field the two
    name alike: wrapped (``{"value": …}``) in the body, plain in the DTO. Fields named or shaped
    differently (``countryId`` against ``country.id``, lists) cannot be compared and are passed over."""
    for name, sent in body.items():
        if name not in found:
            continue
        value = sent["value"] if isinstance(sent, dict) and sent.keys() == {"value"} else sent
        got = found[name]
        if isinstance(value, dict) and isinstance(got, dict):
            if not still_holds(value, got):
                return False
        elif _plain(value) and _plain(got) and value != got and str(value) != str(got):
            return False
    return True


def _plain(value: Any) -> bool:
    return not isinstance(value, dict | list)


# -- Visma.net → CW (the inbound path): read DTOs (CustomerDto …), values not wrapped ----------------


def _required(value: Mapping[str, Any], what: str, *path: str) -> str:
    found = _text(_nested(value, *path))
    if found is None:
        raise MappingError(f"Visma.net {what} has no {'.'.join(path)}, which CW requires")
    return found


def _day(text: str | None) -> str | None:
    """``2024-05-01T00:00:00`` → ``2024-05-01`` (dates are written without an offset, see ``_date``)."""
    return text[:10] if text else None


def _cw_address(value: Mapping[str, Any], what: str) -> dict[str, str] | None:
    address = value.get("mainAddress")
    if not isinstance(address, dict):
        return None
    parts = {
        "street": _text(address.get("addressLine1")),
        "postal_code": _text(address.get("postalCode")),
        "city": _text(address.get("city")),
        "country": _text(_nested(address, "country", "id")),
    }
    return cw_address(parts, f"Visma.net {what} has a main address")


def _party_fields(value: Mapping[str, Any], what: str) -> dict[str, Any]:
    number = _required(value, what, "number")
    label = f"{what} {number}"
    return {
        "number": number,
        "name": _required(value, label, "name"),
        "org_number": _text(value.get("corporateId")),
        "email": _text(_nested(value, "mainContact", "email")),
        "address": _cw_address(value, label),
    }


def _customer(number: str) -> tuple[CWReference, ...]:
    """CW's ``customer_id``: Visma keys customers by number, the external id the worker links."""
    return (CWReference("customer_id", Entity.customer, number),)


def customer_fields(value: Mapping[str, Any], settings: SettingsReader) -> CWDraft:
    return CWDraft(
        {**_party_fields(value, "customer"), "phone": _text(_nested(value, "mainContact", "phone1"))}
    )


def supplier_fields(value: Mapping[str, Any], settings: SettingsReader) -> CWDraft:
    return CWDraft(_party_fields(value, "supplier"))


def project_fields(value: Mapping[str, Any], settings: SettingsReader) -> CWDraft:
    """CW's ``customer_id`` is CW's own id: a reference the worker resolves from the customer number."""
    number = _required(value, "project", "projectID")
    label = f"project {number}"
    customer = _required(value, label, "customer", "number")
    fields = {
        "number": number,
        "name": _required(value, label, "description"),
        "customer_number": customer,
        "start_date": _day(_required(value, label, "startDate")),
        "end_date": _day(_text(value.get("endDate"))),
    }
    return CWDraft(fields, _customer(customer))


def _cw_line(line: Mapping[str, Any], settings: SettingsReader) -> dict[str, Any]:
    return {
        "description": _required(line, "invoice line", "description"),
        "quantity": str(Decimal(str(line.get("quantity") or 0))),
        "unit_price": str(Decimal(str(line.get("unitPriceInCurrency") or 0))),
        "vat_rate": settings.vat_rate(_text(_nested(line, "vatCode", "id")), "Visma.net VAT code"),
        "account": _text(_nested(line, "account", "number")),
        "product_number": _text(line.get("inventoryNumber")),
    }


def invoice_fields(value: Mapping[str, Any], settings: SettingsReader) -> CWDraft:
    """CW's number travels as ``invoiceText`` and its id as ``externalReference`` (see ``invoice_body``)."""
    label = f"invoice {value.get('referenceNumber')}"
    lines = sorted(
        (line for line in value.get("invoiceLines") or [] if isinstance(line, dict)),
        key=lambda line: int(line.get("lineNumber") or 0),
    )
    customer = _required(value, label, "customer", "number")
    fields = {
        "number": _required(value, label, "invoiceText"),
        "customer_number": customer,
        "invoice_date": _day(_required(value, label, "documentDate")),
        "due_date": _day(_required(value, label, "documentDueDate")),
        "currency": _required(value, label, "currencyId"),
        "lines": [_cw_line(line, settings) for line in lines],
        "reference": _text(value.get("customerRefNumber")),
    }
    return CWDraft(fields, _customer(customer))


READERS = readers(customer_fields, supplier_fields, project_fields, invoice_fields)
