"""Uni Economy as the fake speaks it: its constants, seed data, error bodies, the ``filter`` it
understands and how ``expand`` shapes an entity (``tests/fakes/uni_economy.py`` is the fake)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from aiohttp import web

from tests.openapi import Spec, load_spec

SPEC_NAME = "uni-economy-2019.swagger2.json"
API_PREFIX = "/api/biz"
DRAFT, INVOICED = 42001, 42002
API_USER = "6b1f0e2a-6c1d-4a55-9f0e-5f4d8c1e0a01"  # GlobalIdentity of the integration's user
OTHER_USER = "0d5e2c44-1b7a-4f9e-8c3d-2a6b9e7f1c10"  # an accountant working in Uni's UI
EVENT_NAMES = {
    "customers": "Customer",
    "suppliers": "Supplier",
    "projects": "Project",
    "invoices": "CustomerInvoice",
}
EVENT_EXPAND = {
    "customers": "Info,Info.DefaultEmail,Info.DefaultPhone,Info.InvoiceAddress",
    "suppliers": "Info,Info.DefaultEmail,Info.DefaultPhone,Info.InvoiceAddress",
    "projects": "ProjectCustomer",
    "invoices": "Items,Items.VatType,Items.Account,Customer,CurrencyCode",
}
"""What the fake puts in a callback's ``Entity``: the record as a fully expanded GET shows it."""
RELATIONS = {
    "VatType": "vattypes",
    "Account": "accounts",
    "Customer": "customers",
    "ProjectCustomer": "customers",
    "CurrencyCode": "currencycodes",
}
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SEED: dict[str, list[dict[str, Any]]] = {
    "vattypes": [
        {"ID": 1, "VatCode": "3", "VatPercent": 25.0, "Name": "Utgående mva, høy sats"},
        {"ID": 2, "VatCode": "31", "VatPercent": 15.0, "Name": "Utgående mva, middels sats"},
        {"ID": 4, "VatCode": "6", "VatPercent": 0.0, "Name": "Utenfor mva-loven"},
    ],
    "accounts": [
        {"ID": 11, "AccountNumber": 3000, "AccountName": "Salgsinntekt, avgiftspliktig"},
        {"ID": 12, "AccountNumber": 3100, "AccountName": "Salgsinntekt, avgiftsfri"},
    ],
    "currencycodes": [{"ID": 1, "Code": "NOK"}, {"ID": 2, "Code": "EUR"}],
    "departments": [{"ID": 1, "Name": "Hovedavdeling"}],
}
FILTER = re.compile(r"^\s*([\w.]+)\s+(eq|gt)\s+(.+?)\s*$")


def uni_spec() -> Spec:
    """The Uni spec (tests.openapi maps its non-standard ``date``/``double`` types)."""
    return load_spec(SPEC_NAME)


def error(
    status: int, message: str, *details: tuple[str, str], headers: dict[str, str] | None = None
) -> web.Response:
    body = {
        "Message": message,
        "Messages": [{"PropertyName": p, "Message": m, "Level": 3} for p, m in details],
    }
    return web.json_response(body, status=status, headers=headers)


def _literal(raw: str) -> Any:
    if raw.startswith("'") and raw.endswith("'"):
        return raw[1:-1].replace("''", "'")
    return float(raw) if "." in raw else int(raw)


def holds(row: dict[str, Any], clause: re.Match[str]) -> bool:
    field, op, value = row.get(clause[1]), clause[2], _literal(clause[3])
    if op == "eq":
        return bool(field == value)
    if field is None:
        return False
    if isinstance(value, str):  # date-times: compare as times, whatever their text form
        return dt.datetime.fromisoformat(str(field)) > dt.datetime.fromisoformat(value)
    return bool(field > value)


Store = dict[str, dict[int, dict[str, Any]]]


def shape(
    entity: dict[str, Any], expand: set[str], prefix: str = "", store: Store | None = None
) -> dict[str, Any]:
    """Like Uni: nested objects only when named in ``expand`` (dotted paths for deeper ones).

    With ``store``, an expanded name that is only a reference (``VatTypeID``) is looked up.
    """
    out: dict[str, Any] = {}
    for key, value in entity.items():
        path = prefix + key
        if isinstance(value, dict):
            if path in expand:
                out[key] = shape(value, expand, path + ".", store)
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            if path in expand:
                out[key] = [shape(v, expand, path + ".", store) for v in value]
        else:
            out[key] = value
    for name, collection in RELATIONS.items():
        ref = entity.get(name + "ID")
        target = (store or {}).get(collection, {}).get(ref) if isinstance(ref, int) else None
        if prefix + name in expand and name not in entity and target is not None:
            out[name] = shape(target, expand, prefix + name + ".", store)
    return out
