"""Visma.net ERP as the fake speaks it: its constants, tokens, error bodies, the wrapped values of
its update DTOs, the read DTOs' shape, list paging and filters, and the store of one master-data
entity (``tests/fakes/visma_net.py`` is the fake)."""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.openapi import load_spec

SPEC_NAME = "visma-net-erp-v1.openapi3.json"
TOKEN_PATH = "/connect/token"
DRAFTS = ("Hold", "Balanced")
LISTS = ("/v1/customer", "/v1/supplier", "/v1/project", "/v1/customerinvoice")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
API_SUBJECT = "3f0c2b1e-cw-integration"
"""``sub`` of the tokens issued to our API client: who Visma says made the changes we make."""
USER_NAME = "kari.nordmann@acme.no"


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def jwt(claims: dict[str, Any]) -> str:
    """A JWT-shaped token (the signature is random: the fake checks tokens by lookup)."""
    return f"{_b64({'alg': 'RS256', 'typ': 'at+jwt'})}.{_b64(claims)}.{secrets.token_urlsafe(16)}"


def visma_error(status: int, message: str, details: str = "") -> web.Response:
    body = {
        "ExceptionType": "ValidationException" if status < 500 else "InternalServerError",
        "ExceptionMessage": message,
        "ExceptionFaultCode": str(10000 + status),
        "ExceptionMessageID": f"{status}_{uuid.uuid4()}",
        "ExceptionDetails": details,
    }
    return web.json_response(body, status=status)


def unwrap(node: Any) -> Any:
    """``{"name": {"value": "Acme"}}`` → ``{"name": "Acme"}``, recursively."""
    if isinstance(node, dict):
        if set(node) == {"value"}:
            return unwrap(node["value"])
        return {k: unwrap(v) for k, v in node.items()}
    if isinstance(node, list):
        return [unwrap(v) for v in node]
    return node


def unknown_fields(template: str, method: str, body: Any) -> list[str]:
    """Property names the spec does not declare: its schemas allow them, but Visma drops them silently."""
    spec = load_spec(SPEC_NAME)
    schema = spec.request_schema(method, template)
    return _walk(spec.document, schema, body, "") if schema is not None else []


def _walk(document: dict[str, Any], schema: dict[str, Any], node: Any, where: str) -> list[str]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rpartition("/")[2]]
    if isinstance(node, list) and "items" in schema:
        return [
            p for i, item in enumerate(node) for p in _walk(document, schema["items"], item, f"{where}[{i}]")
        ]
    if not isinstance(node, dict) or "properties" not in schema:
        return []
    found = [f"{where}.{key}".lstrip(".") for key in node if key not in schema["properties"]]
    for key, value in node.items():
        if key in schema["properties"]:
            found += _walk(document, schema["properties"][key], value, f"{where}.{key}")
    return found


EVENT_NAMES = {
    "customer": "Customer",
    "supplier": "Supplier",
    "project": "Project",
    "invoice": "CustomerInvoice",
}


def dto(name: str, record: dict[str, Any]) -> dict[str, Any]:
    """A stored record (what the update DTOs said, unwrapped) in the shape of Visma's read DTO."""
    out = {k: v for k, v in record.items() if not k.startswith("_")}
    address = out.get("mainAddress")
    if isinstance(address, dict) and "countryId" in address:
        country = address["countryId"]
        out["mainAddress"] = {k: v for k, v in address.items() if k != "countryId"} | {
            "country": {"id": country}
        }
    if name == "project" and isinstance(out.get("customer"), str):
        out["customer"] = {"number": out["customer"]}
    if name == "invoice":
        out["customer"] = {"number": out.pop("customerNumber", None)}
        out["invoiceLines"] = [linedto(line) for line in out.get("invoiceLines", [])]
    return out


def linedto(line: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in line.items() if k not in ("operation", "vatCodeId", "accountNumber")}
    out["vatCode"] = {"id": line.get("vatCodeId")}
    if line.get("accountNumber"):
        out["account"] = {"number": line["accountNumber"]}
    return out


def page(records: list[dict[str, Any]], query: Mapping[str, str]) -> list[dict[str, Any]]:
    size, number = int(query["pageSize"]), int(query["pageNumber"])
    return records[(number - 1) * size : number * size]


_CONDITIONS: dict[str, Callable[[str, str], bool]] = {
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
}


def modified(record: dict[str, Any], query: Mapping[str, str]) -> bool:
    """``lastModifiedDateTime`` with its condition (Visma's stamps compare as text: one fixed format)."""
    since = query.get("lastModifiedDateTime")
    if since is None:
        return True
    return _CONDITIONS[query["lastModifiedDateTimeCondition"]](str(record["lastModifiedDateTime"]), since)


@dataclass
class Failure:
    status: int
    message: str
    headers: dict[str, str]


@dataclass
class Store:
    """One master-data entity: records keyed by ``key`` (customerCd, supplierCd, projectID)."""

    name: str
    key: str
    required: tuple[str, ...]
    etag: bool = False
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
