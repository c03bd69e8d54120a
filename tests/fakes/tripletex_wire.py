"""Tripletex API v2 as the fake speaks it: its constants, error bodies, the check of each request
against the spec, and the filters of its list endpoints (``tests/fakes/tripletex.py`` is the fake)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.openapi import SpecViolation, load_spec

SPEC = "tripletex-v2.openapi3.json"
CONSUMER_TOKEN = "consumer-abc"
EMPLOYEE_TOKEN = "employee-xyz"
API_EMPLOYEE_ID = 7
USER_EMPLOYEE_ID = 99
"""The employee behind changes made "in Tripletex's UI" (``add`` and the ``user_*`` controls)."""
SUBSCRIPTIONS = "/event/subscription"
EVENTS = (
    *(
        f"{kind}.{verb}"
        for kind in ("customer", "supplier", "project")
        for verb in ("create", "update", "delete")
    ),
    "invoice.charged",
)
COUNTRIES = {"NO": 161, "SE": 200, "DK": 57}
VAT_TYPES = (3, 5, 6, 31)
"""vatType ids the company has (``GET /ledger/vatType``)."""
DEPARTMENTS = (1, 2)
EMPLOYEES = (7, 11, 99)
CURRENCIES = ("NOK", "EUR", "SEK")
CATALOGUES: dict[str, list[dict[str, int | str]]] = {
    "ledger/vatType": [{"id": i} for i in VAT_TYPES],
    "department": [{"id": i} for i in DEPARTMENTS],
    "employee": [{"id": i} for i in EMPLOYEES],
    "currency": [{"id": n, "code": c} for n, c in enumerate(CURRENCIES, start=1)],
}
BODY: web.RequestKey[dict[str, Any]] = web.RequestKey("json", dict)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error(status: int, code: int, message: str, fields: dict[str, str] | None = None) -> web.Response:
    request_id = uuid.uuid4().hex[:12]
    body = {
        "status": status,
        "code": code,
        "message": message,
        "link": None,
        "developerMessage": message,
        "validationMessages": [{"field": k, "message": v} for k, v in (fields or {}).items()] or None,
        "requestId": request_id,
    }
    return web.json_response(body, status=status, headers={"x-tlx-request-id": request_id})


@dataclass
class Failure:
    status: int
    headers: dict[str, str]
    fields: dict[str, str] | None
    on: str


def change_entry(kind: str, employee: int = API_EMPLOYEE_ID) -> dict[str, Any]:
    """One entry of an object's ``changes``: who changed it, when, and how."""
    return {"employeeId": employee, "timestamp": dt.datetime.now(dt.UTC).isoformat(), "changeType": kind}


def spec_problem(method: str, path: str, query: dict[str, str], body: Any) -> str | None:
    """What is wrong with a request by the spec (its body, its query parameters' names), or None."""
    spec = load_spec(SPEC)
    try:
        if path.startswith(SUBSCRIPTIONS) and method in ("POST", "PUT"):
            # The spec marks the whole Subscription schema readOnly (a generator quirk: its own
            # descriptions call hmacSharedSecret "write only"), so check it without that flag.
            schema = {k: v for k, v in spec.schema("Subscription").items() if k != "readOnly"}
            spec.validate(schema, body, where=f"{method} {path}")
        else:
            spec.validate_request(method, path, body)
        params = spec.operation(method, path).get("parameters", [])
    except SpecViolation as exc:
        return str(exc)
    known = {p["name"] for p in params if p.get("in") == "query"}
    required = {p["name"] for p in params if p.get("in") == "query" and p.get("required")}
    unknown, missing = sorted(set(query) - known), sorted(required - set(query))
    if unknown or missing:
        return f"{method} {path}: unknown query parameters {unknown}, missing required {missing}"
    return None


_NUMBERS = {
    "customer": "customerNumber",
    "supplier": "supplierNumber",
    "project": "number",
    "order": "number",
}


def duplicate(kind: str, body: dict[str, Any], existing: list[dict[str, Any]]) -> str | None:
    key = _NUMBERS.get(kind)
    if key and body.get(key) is not None and any(o.get(key) == body[key] for o in existing):
        return key
    return None


def changed_since(obj: dict[str, Any], since: str | None) -> bool:
    """Tripletex's ``changedSince``: the object's latest change is after that time."""
    if since is None:
        return True
    stamps = [c["timestamp"] for c in obj.get("changes", []) if c.get("timestamp")]
    latest = dt.datetime.fromisoformat(stamps[-1]) if stamps else None
    return latest is not None and latest > dt.datetime.fromisoformat(since)


def _in_range(value: str | None, start: str, end: str) -> bool:
    return value is not None and start <= value < end


def matches(kind: str, obj: dict[str, Any], q: Mapping[str, str]) -> bool:
    if kind == "customer" and "customerAccountNumber" in q:
        return str(obj.get("customerNumber")) in q["customerAccountNumber"].split(",")
    if kind == "supplier" and "supplierNumber" in q:
        return str(obj.get("supplierNumber")) in q["supplierNumber"].split(",")
    if kind == "project" and "number" in q:
        return bool(obj.get("number") == q["number"])
    if kind == "order":
        number_ok = "number" not in q or obj.get("number") == q["number"]
        return number_ok and _in_range(obj.get("orderDate"), q["orderDateFrom"], q["orderDateTo"])
    if kind == "invoice":
        customer_ok = "customerId" not in q or str(obj["customer"]["id"]) == q["customerId"]
        return customer_ok and _in_range(obj.get("invoiceDate"), q["invoiceDateFrom"], q["invoiceDateTo"])
    return True
