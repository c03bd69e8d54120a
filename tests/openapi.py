"""Vendor OpenAPI documents as test oracles: find an operation, validate a request body.

Load each document once per test session (``load_spec`` is cached); the documents are large.
Works for OpenAPI 3.0 / 3.1 (``components/schemas``) and Swagger 2.0 (``definitions``).
"""

from __future__ import annotations

import functools
import gzip
import json
import re
from pathlib import Path
from typing import Any

from jsonschema.exceptions import ValidationError
from openapi_schema_validator import OAS30WriteValidator, OAS31Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4, DRAFT202012

ROOT = Path(__file__).resolve().parent.parent
VENDOR_SPECS = ROOT / "tests" / "specs"  # the vendors' documents, gzipped (see its README)
OWN_SPECS = ROOT / "contracts"  # CW's own interface documents


class SpecViolation(AssertionError):
    """A request that the vendor's document does not allow."""


# Uni's Swagger 2 document uses types JSON Schema does not know.
_NONSTANDARD_TYPES = {"date": ("string", "date"), "double": ("number", "double")}


def _standard_types(node: Any) -> Any:
    if isinstance(node, dict):
        out = {k: _standard_types(v) for k, v in node.items()}
        kind = out.get("type")
        if isinstance(kind, str) and kind in _NONSTANDARD_TYPES:
            out["type"], fmt = _NONSTANDARD_TYPES[kind]
            out.setdefault("format", fmt)
        return out
    if isinstance(node, list):
        return [_standard_types(v) for v in node]
    return node


class Spec:
    def __init__(self, document: dict[str, Any], uri: str) -> None:
        self.swagger2 = "swagger" in document
        self.document = _standard_types(document) if self.swagger2 else document
        self.uri = uri
        self.oas31 = str(document.get("openapi", "")).startswith("3.1")
        spec_kind = DRAFT202012 if self.oas31 else DRAFT4
        self._registry: Registry[Any] = Registry().with_resource(
            uri, Resource.from_contents(self.document, default_specification=spec_kind)
        )
        self._templates = [
            (re.compile("^" + re.sub(r"\\\{[^}]+\\\}", r"[^/]+", re.escape(p)) + "$"), p)
            for p in document["paths"]
        ]

    def operation(self, method: str, path: str) -> dict[str, Any]:
        """The operation object for a concrete request path (or a path template)."""
        verb = method.lower()
        exact = self.document["paths"].get(path)
        if exact is not None and verb in exact:
            op: dict[str, Any] = exact[verb]
            return op
        # Several templates may match one path (``/v1/project/{projectID}`` for GET and
        # ``/v1/project/{projectId}`` for PUT): take the first that has this method.
        for pattern, template in self._templates:
            item = self.document["paths"][template]
            if pattern.match(path) and verb in item:
                op = item[verb]
                return op
        raise SpecViolation(f"{method.upper()} {path} is not an operation of {self.uri}")

    def request_schema(self, method: str, path: str) -> dict[str, Any] | None:
        op = self.operation(method, path)
        if self.swagger2:
            for param in op.get("parameters", []):
                if param.get("in") == "body":
                    schema: dict[str, Any] = param["schema"]
                    return schema
            return None
        body = op.get("requestBody")
        if body is None:
            return None
        if "$ref" in body:
            body = self.resolve(body["$ref"])
        for media, content in body.get("content", {}).items():
            if "json" in media and "schema" in content:
                schema = content["schema"]
                return schema
        return None

    def resolve(self, ref: str) -> dict[str, Any]:
        node: Any = self.document
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        result: dict[str, Any] = node
        return result

    def validate_request(self, method: str, path: str, body: Any) -> None:
        """Raise SpecViolation unless ``body`` is a valid request body for that operation."""
        schema = self.request_schema(method, path)
        if schema is None:
            if body is not None:
                raise SpecViolation(f"{method.upper()} {path} takes no JSON body")
            return
        self.validate(schema, body, where=f"{method.upper()} {path}")

    def validate(self, schema: dict[str, Any], instance: Any, *, where: str = "") -> None:
        cls = OAS31Validator if self.oas31 else OAS30WriteValidator
        validator = cls(self._absolute(schema), registry=self._registry)
        errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.path))
        if errors:
            lines = [f"{'/'.join(map(str, e.path)) or '<body>'}: {e.message}" for e in errors[:10]]
            raise SpecViolation(f"{where} body violates {self.uri}:\n  " + "\n  ".join(lines))

    def _absolute(self, node: Any) -> Any:
        """A copy of a schema taken out of the document, its local ``#/…`` refs made absolute."""
        if isinstance(node, dict):
            return {
                k: (
                    self.uri + v
                    if k == "$ref" and isinstance(v, str) and v.startswith("#")
                    else self._absolute(v)
                )
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [self._absolute(v) for v in node]
        return node

    def schema(self, name: str) -> dict[str, Any]:
        key = "definitions" if self.swagger2 else "components"
        node = self.document[key] if self.swagger2 else self.document[key]["schemas"]
        result: dict[str, Any] = node[name]
        return result


@functools.cache
def load_spec(name: str) -> Spec:
    """``tripletex-v2.openapi3.json`` etc. from tests/specs (gzipped), or a document in contracts/."""
    vendor = VENDOR_SPECS / f"{name}.gz"
    if vendor.exists():
        text = gzip.decompress(vendor.read_bytes()).decode("utf-8")
    elif (OWN_SPECS / name).exists():
        text = (OWN_SPECS / name).read_text(encoding="utf-8")
    else:
        raise FileNotFoundError(f"{name} is neither in {VENDOR_SPECS} (as {name}.gz) nor in {OWN_SPECS}")
    return Spec(json.loads(text), uri=f"urn:cwi-spec:{name}")


__all__ = ["Spec", "SpecViolation", "ValidationError", "load_spec"]
