"""What the sandbox ERP accepts: requests checked against contracts/generic_rest.openapi.json, plus two
business rules of its own that refuse some valid records (the demo shows them as ProviderRejected).

Everything is compiled once per document. A valid request costs one pass of the compiled
predicates (fastcheck.py); only a refused one pays for jsonschema, which names the field.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from contracts.interface import DOCUMENT_NAME, load_document
from providers.generic_rest.sandbox.fastcheck import Check, SchemaCompiler

_URI = f"urn:cwi:{DOCUMENT_NAME}"
ACCEPTED_CURRENCIES = frozenset({"NOK", "SEK", "DKK", "EUR", "USD", "GBP"})
_ORG_NUMBER_WEIGHTS = (3, 2, 7, 6, 5, 4, 3, 2)

__all__ = ["ACCEPTED_CURRENCIES", "Problem", "RequestRules", "load_document", "valid_org_number"]


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a body is refused with 422: the document's ``rule`` code and ``<field>: <message>``."""

    rule: str
    message: str

    def as_json(self) -> dict[str, str]:
        return {"error": self.message, "rule": self.rule}


@dataclass(frozen=True, slots=True)
class ListQuery:
    """A listing's query, checked: ``cursor`` raw (the app decodes it), ``since`` in UTC."""

    cursor: str | None
    since: dt.datetime | None
    limit: int


class Schema:
    """One schema of the document: a fast predicate, and jsonschema to say what is wrong."""

    def __init__(self, schema: Mapping[str, Any], compiler: SchemaCompiler, registry: Registry[Any]) -> None:
        self.check: Check = compiler.compile(schema)
        absolute = {k: _URI + v if k == "$ref" else v for k, v in schema.items()}
        self.validator = Draft202012Validator(
            absolute, registry=registry, format_checker=FormatChecker(formats=["date"])
        )

    def explain(self, instance: Any) -> ValidationError | None:
        return best_match(self.validator.iter_errors(instance))

    def problem(self, name: str, value: Any) -> str | None:
        if self.check(value):
            return None
        error = self.explain(value)
        return f"{name}: {_message(error) if error else 'invalid'}"


class RequestRules:
    """Checks of one interface request; each ``*_problem`` says what is wrong, or None."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        registry: Registry[Any] = Registry().with_resource(
            _URI, Resource.from_contents(dict(document), default_specification=DRAFT202012)
        )
        compiler = SchemaCompiler(document)
        self.bodies: dict[str, Schema] = {}
        self._cw_ids: dict[str, Schema] = {}
        for template, item in document["paths"].items():
            if "put" in item:
                entity = template.split("/")[2]
                body = item["put"]["requestBody"]["content"]["application/json"]["schema"]
                self.bodies[entity] = Schema(body, compiler, registry)
                [cw_id] = (p for p in item["parameters"] if p["name"] == "cw_id")
                self._cw_ids[entity] = Schema(cw_id["schema"], compiler, registry)
        self.entities = frozenset(self.bodies)
        params = document["components"]["parameters"]
        self._param = {
            name: Schema(params[name]["schema"], compiler, registry)
            for name in ("IdempotencyKey", "Cursor", "Limit")
        }

    def request_problem(self, method: str, entity: str, cw_id: str, headers: Mapping[str, str]) -> str | None:
        """A bad ``cw_id``, or a write without a valid Idempotency-Key (400)."""
        problem = self._cw_ids[entity].problem("cw_id", cw_id)
        if problem is not None or method == "GET":
            return problem
        key = headers.get("Idempotency-Key")
        if key is None:
            return "Idempotency-Key: header is required"
        return self._param["IdempotencyKey"].problem("Idempotency-Key", key)

    def list_query(self, query: Mapping[str, str]) -> ListQuery | str:
        """The listing's parameters, or what is wrong with them (400)."""
        cursor = query.get("cursor")
        if cursor is not None and (problem := self._param["Cursor"].problem("cursor", cursor)):
            return problem
        raw_limit = query.get("limit", "100")
        try:
            limit = int(raw_limit)
        except ValueError:
            return f"limit: {raw_limit!r} is not an integer"
        if (problem := self._param["Limit"].problem("limit", limit)) is not None:
            return problem
        since = None
        if (raw := query.get("changed_since")) is not None:
            try:
                since = dt.datetime.fromisoformat(raw)
            except ValueError:
                return f"changed_since: {raw!r} is not an RFC 3339 date-time"
            if since.tzinfo is None:
                return f"changed_since: {raw!r} has no offset (add Z or +01:00)"
        return ListQuery(cursor, None if since is None else since.astimezone(dt.UTC), limit)

    def body_problem(self, entity: str, cw_id: str, body: Any) -> Problem | None:
        """Schema violation, ``id`` differing from the path, or a business rule (all 422)."""
        schema = self.bodies[entity]
        if not schema.check(body):
            error = schema.explain(body)
            # None would mean fastcheck and jsonschema disagree; the tests cross-check to prevent it.
            return Problem("schema", _describe(error) if error else "body: does not match the schema")
        if body["id"] != cw_id:
            return Problem("id_mismatch", f"id: {body['id']!r} differs from the cw_id in the path, {cw_id!r}")
        return business_rule_problem(entity, body)


def business_rule_problem(entity: str, body: Mapping[str, Any]) -> Problem | None:
    if entity in ("customer", "supplier"):
        org_number = body.get("org_number")
        if org_number is not None and not valid_org_number(org_number):
            return Problem(
                "org_number",
                f"org_number: {org_number!r} is not a Norwegian organisation number "
                "(9 digits, the last a mod-11 check digit)",
            )
    if entity == "invoice" and body["currency"] not in ACCEPTED_CURRENCIES:
        accepted = ", ".join(sorted(ACCEPTED_CURRENCIES))
        return Problem(
            "currency", f"currency: this ERP invoices only in {accepted}, not {body['currency']!r}"
        )
    return None


def valid_org_number(value: str) -> bool:
    """Nine digits whose last is the mod-11 check digit of the first eight (Brønnøysund rule)."""
    if len(value) != 9 or not value.isascii() or not value.isdigit():
        return False
    digits = [int(c) for c in value]
    check = (11 - sum(w * d for w, d in zip(_ORG_NUMBER_WEIGHTS, digits, strict=False)) % 11) % 11
    return check != 10 and check == digits[8]


def _describe(error: ValidationError) -> str:
    error = _not_null_branch(error)
    path = _field_path(error.absolute_path)
    if error.validator == "required":
        missing = str(error.message).split("'")[1]
        return f"{path}.{missing}: is required" if path else f"{missing}: is required"
    return f"{path or 'body'}: {_message(error)}"


def _not_null_branch(error: ValidationError) -> ValidationError:
    """For an optional field (``anyOf: [X, null]``), the reason X failed rather than "no branch matched"."""
    if error.validator != "anyOf":
        return error
    real = [e for e in error.context or () if not (e.validator == "type" and e.validator_value == "null")]
    branches = {e.relative_schema_path[0] for e in real}
    return (best_match(real) or error) if len(branches) == 1 else error


def _field_path(parts: Any) -> str:
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _message(error: ValidationError) -> str:
    # The country and currency enums list hundreds of codes: name the rule, not the list.
    if error.validator == "enum" and len(error.validator_value) > 10:
        return f"{error.instance!r} is not one of the {len(error.validator_value)} accepted codes"
    return str(error.message)
