"""CW records → Visma.net ERP request bodies (``CustomerUpdateDto`` etc.), per-client settings.

Every field is wrapped as ``{"value": …}``. Fields CW leaves empty are left out rather than
cleared: the DTOs' values are not nullable. Dates go as ``YYYY-MM-DDT00:00:00`` without an offset,
so Visma reads them as the company's calendar day (an offset could move the day).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from contracts import Address, Customer, Invoice, InvoiceLine, Project, Supplier
from providers.base import ConnectionSpec
from providers.errors import MappingError

KIND = "visma_net"
JsonObject = dict[str, Any]


def wrap(value: Any) -> JsonObject:
    return {"value": value}


def _date(day: dt.date) -> str:
    return f"{day.isoformat()}T00:00:00"


def _number(value: Decimal) -> float:
    # The DTOs declare ``number/double``; JSON has no decimal type.
    return float(value)


def _add_setting(spec: ConnectionSpec, name: str) -> str:
    return f"cwi connections set {spec.client_id} {KIND} --setting {name}=…"


def flag(spec: ConnectionSpec, name: str) -> bool:
    """A true/false setting, false when absent."""
    raw = (spec.setting(name) or "false").strip().lower()
    if raw not in ("true", "false"):
        raise MappingError(f"setting {name} must be true or false, not {raw!r} ({_add_setting(spec, name)})")
    return raw == "true"


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


def customer_body(customer: Customer, spec: ConnectionSpec) -> JsonObject:
    """``CustomerUpdateDto``; the customer number is Visma's customerCd (our natural key)."""
    body = _party(customer, customer.phone)
    if class_id := spec.setting("customer_class_id"):
        body["customerClassId"] = wrap(class_id)
    return body


def supplier_body(supplier: Supplier, spec: ConnectionSpec) -> JsonObject:
    """``SupplierUpdateDto``; the supplier number is Visma's supplierCd."""
    body = _party(supplier, None)
    if class_id := spec.setting("supplier_class_id"):
        body["supplierClassId"] = wrap(class_id)
    return body


# A create must keep our number even where the tenant numbers records automatically.
CREATE_EXTRAS: JsonObject = {"overrideNumberSeries": wrap(True)}


def _segments(raw: str, spec: ConnectionSpec, name: str) -> list[JsonObject]:
    """``"1:100,2:20"`` → ``[{"segmentId": 1, "segmentValue": "100"}, …]``."""
    segments = []
    for part in raw.split(","):
        segment, sep, value = part.strip().partition(":")
        if not sep or not segment.strip().isdigit() or not value.strip():
            raise MappingError(
                f"setting {name} must be segmentId:value pairs separated by commas, e.g. 1:100,2:20 "
                f"({_add_setting(spec, name)})"
            )
        segments.append({"segmentId": int(segment), "segmentValue": value.strip()})
    return segments


def project_body(project: Project, spec: ConnectionSpec) -> JsonObject:
    """``ProjectUpdateDto``. The spec requires ``defSub`` unless a project template is given.

    The project's customer is not sent: CW's project carries the CW customer id, not the customer
    number Visma's ``customer`` field wants.
    """
    body: JsonObject = {
        "projectID": wrap(project.number),
        "description": wrap(project.name),
        "startDate": wrap(_date(project.start_date)),
    }
    if project.end_date:
        body["endDate"] = wrap(_date(project.end_date))
    if template := spec.setting("project_template"):
        body["template"] = wrap(template)
    elif subaccount := spec.setting("project_subaccount"):
        body["defSub"] = _segments(subaccount, spec, "project_subaccount")
    else:
        raise MappingError(
            "Visma.net needs a project template or a default subaccount for new projects — add setting "
            f"project_template ({_add_setting(spec, 'project_template')}) or project_subaccount"
        )
    if branch := spec.setting("branch_number"):
        body["branch"] = wrap(branch)
    return body


def _rate_text(rate: Decimal) -> str:
    return format(rate.normalize(), "f")


def vat_code(rate: Decimal, spec: ConnectionSpec) -> str:
    """The ``vat_code.<rate>`` setting for a VAT rate, rates compared as numbers ("25" = "25.00")."""
    for name, value in spec.settings.items():
        prefix, _, raw_rate = name.partition(".")
        if prefix != "vat_code" or not value:
            continue
        try:
            if Decimal(raw_rate) == rate:
                return value
        except InvalidOperation:
            continue
    text = _rate_text(rate)
    raise MappingError(
        f"no VAT code for {text}% — add setting vat_code.{text} ({_add_setting(spec, f'vat_code.{text}')})"
    )


def _line(line: InvoiceLine, spec: ConnectionSpec) -> JsonObject:
    body: JsonObject = {
        "operation": "Insert",
        "description": wrap(line.description),
        "quantity": wrap(_number(line.quantity)),
        "unitPriceInCurrency": wrap(_number(line.unit_price)),
        "vatCodeId": wrap(vat_code(line.vat_rate, spec)),
    }
    account = line.account or spec.setting("revenue_account")
    if account:
        body["accountNumber"] = wrap(account)
    elif not line.product_number:
        raise MappingError(
            f"invoice line {line.description!r} has no account — add setting revenue_account "
            f"({_add_setting(spec, 'revenue_account')})"
        )
    if line.product_number:
        body["inventoryNumber"] = wrap(line.product_number)
    return body


def invoice_body(invoice: Invoice, spec: ConnectionSpec) -> JsonObject:
    """``CustomerInvoiceUpdateDto`` for ``POST /v2/customerinvoice``; externalReference = CW invoice id."""
    body: JsonObject = {
        "customerNumber": wrap(invoice.customer_number),
        "documentDate": wrap(_date(invoice.invoice_date)),
        "documentDueDate": wrap(_date(invoice.due_date)),
        "externalReference": wrap(invoice.id),
        "currencyId": wrap(invoice.currency),
        "invoiceText": wrap(invoice.number),
        "invoiceLines": [_line(line, spec) for line in invoice.lines],
    }
    if invoice.reference:
        body["customerRefNumber"] = wrap(invoice.reference)
    if branch := spec.setting("branch_number"):
        body["branchNumber"] = wrap(branch)
    return body


def invoice_update_body(invoice: Invoice, spec: ConnectionSpec, old_line_numbers: list[int]) -> JsonObject:
    """The PUT body of a draft: delete its current lines, insert ours (Visma updates lines by operation)."""
    body = invoice_body(invoice, spec)
    deletes = [{"operation": "Delete", "lineNumber": wrap(number)} for number in old_line_numbers]
    body["invoiceLines"] = deletes + body["invoiceLines"]
    return body


@dataclass(frozen=True, slots=True)
class InvoicePlan:
    """What happens after an invoice is written: release it (post it), then send it by AutoInvoice."""

    release: bool
    send: bool


def invoice_plan(spec: ConnectionSpec) -> InvoicePlan:
    # finalise_invoices is the generic name for the same step; Visma calls it release.
    release = flag(spec, "release_invoices") or flag(spec, "finalise_invoices")
    send = flag(spec, "send_invoices")
    if send and not release:
        raise MappingError(
            "send_invoices=true needs release_invoices=true: Visma.net sends only released invoices "
            f"({_add_setting(spec, 'release_invoices')})"
        )
    return InvoicePlan(release, send)
