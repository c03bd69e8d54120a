"""The CW records that travel in an envelope's ``data``: customer, supplier, project, invoice.

Every model is strict and forbids unknown fields, so a typo in a producer is an error that names
the field instead of a value silently dropped. Money and quantities are ``Decimal``.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Annotated, Any, Self

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from contracts.codes import COUNTRY_CODES, CURRENCY_CODES


def _country(value: str) -> str:
    if value not in COUNTRY_CODES:
        raise ValueError(f"{value!r} is not an ISO 3166-1 alpha-2 country code (e.g. 'NO')")
    return value


def _currency(value: str) -> str:
    if value not in CURRENCY_CODES:
        raise ValueError(f"{value!r} is not an ISO 4217 currency code (e.g. 'NOK')")
    return value


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _iso_date(value: Any) -> Any:
    """Dates are ISO 8601 strings (``2026-11-23``) on the wire: pydantic alone would also read a
    string of digits as a Unix timestamp (``"0"`` as 1970-01-01)."""
    if isinstance(value, dt.datetime) or not isinstance(value, str | dt.date):
        raise ValueError(f"must be an ISO 8601 date like 2026-11-23, not {value!r}")
    if isinstance(value, str) and not _ISO_DATE.fullmatch(value):
        raise ValueError(f"must be an ISO 8601 date like 2026-11-23, not {value!r}")
    return value


def _no_surrounding_space(value: str) -> str:
    if value != value.strip():
        raise ValueError(f"must not begin or end with white space: {value!r}")
    return value


NonEmpty = Annotated[str, Field(min_length=1, max_length=255)]
Identifier = Annotated[
    str,
    Field(min_length=1, max_length=255),
    AfterValidator(_no_surrounding_space),
]
"""An id: no white space around it (``" c1"`` and ``"c1"`` would be two records)."""
# Lax inside (a checked ISO string becomes a date); the validator before it admits nothing else.
IsoDate = Annotated[dt.date, Field(strict=False), BeforeValidator(_iso_date)]
Amount = Annotated[Decimal, Field(max_digits=20, decimal_places=6)]
"""Money and quantities: at most 20 digits, 6 of them after the point (``1E+999999`` is refused)."""
CountryCode = Annotated[str, AfterValidator(_country)]
CurrencyCode = Annotated[str, AfterValidator(_currency)]


CONTRACT = ConfigDict(strict=True, extra="forbid", frozen=True, cache_strings="keys")
"""Every contract model: strict, closed, immutable. Parsing JSON caches only keys: pydantic's
default also caches values in one process-wide table of 16,384 strings, about 1 MB a worker
fills with ids and names that never recur."""


class Record(BaseModel):
    """Base of every CW record: strict, closed, immutable."""

    model_config = CONTRACT

    id: Identifier


class Address(BaseModel):
    model_config = CONTRACT

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
    customer_id: Identifier
    start_date: IsoDate
    end_date: IsoDate | None = None
    customer_number: NonEmpty | None = None
    """The customer's number: ERPs key customers by number, not by CW id."""

    @model_validator(mode="after")
    def _dates_in_order(self) -> Self:
        if self.end_date is not None and self.end_date < self.start_date:
            raise ValueError("end_date is before start_date")
        return self


class InvoiceLine(BaseModel):
    model_config = CONTRACT

    description: NonEmpty
    quantity: Amount
    unit_price: Amount
    vat_rate: Annotated[
        Decimal, Field(ge=0, le=100, max_digits=9, decimal_places=6, description="VAT rate in percent")
    ]
    account: NonEmpty | None = None
    product_number: NonEmpty | None = None


class Invoice(Record):
    number: NonEmpty
    customer_id: Identifier
    customer_number: NonEmpty
    invoice_date: IsoDate
    due_date: IsoDate
    currency: CurrencyCode
    lines: Annotated[list[InvoiceLine], Field(min_length=1)]
    project_id: Identifier | None = None
    project_number: NonEmpty | None = None
    """The project's number, for ERPs that link invoices to projects by number."""
    reference: NonEmpty | None = None

    @model_validator(mode="after")
    def _due_after_issue(self) -> Self:
        if self.due_date < self.invoice_date:
            raise ValueError("due_date is before invoice_date")
        return self


CWRecord = Customer | Supplier | Project | Invoice
