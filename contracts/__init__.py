"""Data shapes on the wire and at the boundaries. No I/O, and no imports of our other packages."""

from contracts.envelope import (
    Action,
    Entity,
    Envelope,
    ExternalChange,
    InvalidEnvelopeError,
    Source,
    envelope_json_schema,
    parse_envelope,
)
from contracts.reasons import DeadLetterReason
from contracts.records import Address, Customer, CWRecord, Invoice, InvoiceLine, Project, Record, Supplier

__all__ = [
    "Action",
    "Address",
    "CWRecord",
    "Customer",
    "DeadLetterReason",
    "Entity",
    "Envelope",
    "ExternalChange",
    "InvalidEnvelopeError",
    "Invoice",
    "InvoiceLine",
    "Project",
    "Record",
    "Source",
    "Supplier",
    "envelope_json_schema",
    "parse_envelope",
]
