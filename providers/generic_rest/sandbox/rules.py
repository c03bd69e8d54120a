"""What the sandbox ERP accepts: requests checked against contracts/generic_rest.openapi.json, plus two
business rules of its own that refuse some valid records (the demo shows them as ProviderRejected).

Everything is compiled once per document. A valid request costs one pass of the compiled
predicates (fastcheck.py); only a refused one pays for jsonschema, which names the field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib.resources import files
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from providers.generic_rest.sandbox.fastcheck import Check, SchemaCompiler

DOCUMENT_NAME = "generic_rest.openapi.json"
_URI = "urn:cwi:generic_rest.openapi.json"
ACCEPTED_CURRENCIES = frozenset({"NOK", "SEK", "DKK", "EUR", "USD", "GBP"})
_ORG_NUMBER_WEIGHTS = (3, 2, 7, 6, 5, 4, 3, 2)


def load_document() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((files("contracts") / DOCUMENT_NAME).read_text())
    return document


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


class RequestRules:
    """Checks of one interface request; each ``*_problem`` returns ``"<field>: <message>"`` or None."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        registry: Registry[Any] = Registry().with_resource(
            _URI, Resource.from_contents(dict(document), default_specification=DRAFT202012)
        )
        compiler = SchemaCompiler(document)
        self.bodies: dict[str, Schema] = {}
        self._params: dict[str, list[tuple[str, str, Schema]]] = {}
        for template, item in document["paths"].items():
            entity = template.split("/")[2]
            body = item["put"]["requestBody"]["content"]["application/json"]["schema"]
            self.bodies[entity] = Schema(body, compiler, registry)
            self._params[entity] = [
                (param["in"], param["name"], Schema(param["schema"], compiler, registry))
                for param in (_resolve(document, p) for p in item.get("parameters", []))
                if param.get("required")
            ]
        self.entities = frozenset(self.bodies)

    def request_problem(self, entity: str, cw_id: str, headers: Mapping[str, str]) -> str | None:
        """Unknown entity, bad path parameter, or a missing required header."""
        if entity not in self.entities:
            return f"entity: {entity!r} is not one of {', '.join(sorted(self.entities))}"
        for where, name, schema in self._params[entity]:
            value = cw_id if where == "path" else headers.get(name)
            if value is None:
                return f"{name}: header is required"
            if not schema.check(value):
                error = schema.explain(value)
                return f"{name}: {_message(error) if error else 'invalid'}"
        return None

    def body_problem(self, entity: str, cw_id: str, body: Any) -> str | None:
        """Schema violation, ``id`` differing from the path, or a business rule."""
        schema = self.bodies[entity]
        if not schema.check(body):
            error = schema.explain(body)
            # None would mean fastcheck and jsonschema disagree; the tests cross-check to prevent it.
            return _describe(error) if error else "body: does not match the schema"
        if body["id"] != cw_id:
            return f"id: {body['id']!r} differs from the cw_id in the path, {cw_id!r}"
        return business_rule_problem(entity, body)


def business_rule_problem(entity: str, body: Mapping[str, Any]) -> str | None:
    if entity in ("customer", "supplier"):
        org_number = body.get("org_number")
        if org_number is not None and not valid_org_number(org_number):
            return (
                f"org_number: {org_number!r} is not a Norwegian organisation number "
                "(9 digits, the last a mod-11 check digit)"
            )
    if entity == "invoice" and body["currency"] not in ACCEPTED_CURRENCIES:
        accepted = ", ".join(sorted(ACCEPTED_CURRENCIES))
        return f"currency: this ERP invoices only in {accepted}, not {body['currency']!r}"
    return None


def valid_org_number(value: str) -> bool:
    """Nine digits whose last is the mod-11 check digit of the first eight (Brønnøysund rule)."""
    if len(value) != 9 or not value.isascii() or not value.isdigit():
        return False
    digits = [int(c) for c in value]
    check = (11 - sum(w * d for w, d in zip(_ORG_NUMBER_WEIGHTS, digits, strict=False)) % 11) % 11
    return check != 10 and check == digits[8]


def _resolve(document: Mapping[str, Any], node: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = node.get("$ref")
    if ref is None:
        return node
    target: Any = document
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    result: Mapping[str, Any] = target
    return result


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
