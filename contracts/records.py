"""The CW records that travel in an envelope's ``data``: customer, supplier, project, invoice.

Every model is strict and forbids unknown fields, so a typo in a producer is an error that names
the field instead of a value silently dropped. Money and quantities are ``Decimal``.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from contracts.codes import COUNTRY_CODES, CURRENCY_CODES


def _country(value: str) -> str:
    if value not in COUNTRY_CODES:
        raise ValueError(f"{value!r} is not an ISO 3166-1 alpha-2 country code (e.g. 'NO')")
    return value


def _currency(value: str) -> str:
    if value not in CURRENCY_CODES:
        raise ValueError(f"{value!r} is not an ISO 4217 currency code (e.g. 'NOK')")
    return value


NonEmpty = Annotated[str, Field(min_length=1, max_length=255)]
CountryCode = Annotated[str, AfterValidator(_country)]
CurrencyCode = Annotated[str, AfterValidator(_currency)]


class Record(BaseModel):
    """Base of every CW record: strict, closed, immutable."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    id: NonEmpty


class Address(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    street: NonEmpty
    postal_code: NonEmpty
    city: NonEmpty
    country: CountryCode


class Customer(Record):
    number: NonEmpty
    name: NonEmpty
    org_number: NonEmpty | None = None
    email: NonEmpty | None = None
    phone: NonEmpty | None = None
    address: Address | None = None


class Supplier(Record):
    number: NonEmpty
    name: NonEmpty
    org_number: NonEmpty | None = None
    email: NonEmpty | None = None
    address: Address | None = None


class Project(Record):
    number: NonEmpty
    name: NonEmpty
    customer_id: NonEmpty
    start_date: dt.date
    end_date: dt.date | None = None
    customer_number: NonEmpty | None = None
    """The customer's number: ERPs key customers by number, not by CW id."""

    @model_validator(mode="after")
    def _dates_in_order(self) -> Self:
        if self.end_date is not None and self.end_date < self.start_date:
            raise ValueError("end_date is before start_date")
        return self


class InvoiceLine(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    description: NonEmpty
    quantity: Decimal
    unit_price: Decimal
    vat_rate: Annotated[Decimal, Field(ge=0, le=100, description="VAT rate in percent")]
    account: NonEmpty | None = None
    product_number: NonEmpty | None = None


class Invoice(Record):
    number: NonEmpty
    customer_id: NonEmpty
    customer_number: NonEmpty
    invoice_date: dt.date
    due_date: dt.date
    currency: CurrencyCode
    lines: Annotated[list[InvoiceLine], Field(min_length=1)]
    project_id: NonEmpty | None = None
    project_number: NonEmpty | None = None
    """The project's number, for ERPs that link invoices to projects by number."""
    reference: NonEmpty | None = None

    @model_validator(mode="after")
    def _due_after_issue(self) -> Self:
        if self.due_date < self.invoice_date:
            raise ValueError("due_date is before invoice_date")
        return self


CWRecord = Customer | Supplier | Project | Invoice
