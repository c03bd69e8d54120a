"""JSON Schema compiled to plain Python predicates: the sandbox's fast yes/no answer per request.

jsonschema spends about a millisecond on one invoice, too slow for the worker benchmark's
1,000+ requests per second on two cores; these closures answer "valid?" in a small fraction of
that. They cover the keywords the interface document uses and refuse to compile any other, so
they cannot silently accept what jsonschema would refuse. jsonschema still explains a failure
(rules.py), and the tests cross-check the two on valid and invalid bodies.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from typing import Any

Check = Callable[[Any], bool]

_ANNOTATIONS = frozenset(
    {
        "title",
        "description",
        "default",
        "examples",
        "example",
        "deprecated",
        "readOnly",
        "writeOnly",
        "$comment",
    }
)
_STRING = frozenset({"minLength", "maxLength", "pattern", "format"})
_NUMBER = frozenset({"minimum", "maximum"})
_OBJECT = frozenset({"properties", "required", "additionalProperties"})
_ARRAY = frozenset({"items", "minItems", "maxItems"})
_OTHER = frozenset({"type", "enum", "anyOf", "allOf", "$ref"})
_KNOWN = _ANNOTATIONS | _STRING | _NUMBER | _OBJECT | _ARRAY | _OTHER
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _is_integer(x: Any) -> bool:
    return (isinstance(x, int) and not isinstance(x, bool)) or (isinstance(x, float) and x.is_integer())


_TYPES: dict[str, Check] = {
    "string": lambda x: isinstance(x, str),
    "number": _is_number,
    "integer": _is_integer,
    "boolean": lambda x: isinstance(x, bool),
    "object": lambda x: isinstance(x, dict),
    "array": lambda x: isinstance(x, list),
    "null": lambda x: x is None,
}


def _is_date(x: str) -> bool:
    if not _DATE.match(x):
        return False
    try:
        dt.date.fromisoformat(x)
    except ValueError:
        return False
    return True


def _all(checks: list[Check]) -> Check:
    if not checks:
        return lambda x: True
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks
        return lambda x: first(x) and second(x)

    def every(x: Any) -> bool:
        # A plain loop: all() over a generator costs a frame per call, and this runs per field.
        for check in checks:  # noqa: SIM110
            if not check(x):
                return False
        return True

    return every


def _any(checks: list[Check]) -> Check:
    if len(checks) == 2:
        first, second = checks
        return lambda x: first(x) or second(x)

    def some(x: Any) -> bool:
        for check in checks:  # noqa: SIM110
            if check(x):
                return True
        return False

    return some


class SchemaCompiler:
    """Compiles the schemas of one document; each ``$ref`` target is compiled once and shared."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self._document = document
        self._refs: dict[str, Check] = {}

    def resolve(self, ref: str) -> Check:
        """The compiled target of a local ``#/…`` reference."""
        if ref in self._refs:
            return self._refs[ref]
        target: Any = self._document
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
        later: list[Check] = []
        self._refs[ref] = lambda x: later[0](x)  # what a recursive schema sees while it compiles
        compiled = self.compile(target)
        later.append(compiled)
        self._refs[ref] = compiled
        return compiled

    def compile(self, schema: Mapping[str, Any]) -> Check:
        unknown = schema.keys() - _KNOWN
        if unknown:
            raise ValueError(f"fastcheck cannot compile the JSON Schema keyword(s) {sorted(unknown)}")
        only = schema.get("type") if isinstance(schema.get("type"), str) else None
        checks: list[Check] = []
        if "$ref" in schema:
            checks.append(self.resolve(schema["$ref"]))
        merged = False
        for family, build in (("string", _string), ("object", self._object), ("array", self._array)):
            inner = build(schema)
            if inner is not None:
                is_family = _TYPES[family]
                if only == family:
                    # The type check and the family's keywords in one call.
                    checks.append(lambda x, t=is_family, c=inner: t(x) and c(x))  # type: ignore[misc]
                    merged = True
                else:
                    checks.append(lambda x, t=is_family, c=inner: not t(x) or c(x))  # type: ignore[misc]
        if "type" in schema and not merged:
            names = [schema["type"]] if only else schema["type"]
            checks.insert(0, _any([_TYPES[name] for name in names]) if len(names) > 1 else _TYPES[names[0]])
        checks.extend(_number(schema))
        if "enum" in schema:
            checks.append(_enum(schema["enum"]))
        if "anyOf" in schema:
            checks.append(_any([self.compile(sub) for sub in schema["anyOf"]]))
        if "allOf" in schema:
            checks.append(_all([self.compile(sub) for sub in schema["allOf"]]))
        return _all(checks)

    def _object(self, schema: Mapping[str, Any]) -> Check | None:
        """Properties, required and additionalProperties in one pass over a dict's items."""
        if not schema.keys() & _OBJECT:
            return None
        props = {name: self.compile(sub) for name, sub in schema.get("properties", {}).items()}
        required = tuple(schema.get("required", ()))
        extra_schema = schema.get("additionalProperties", True)
        closed = extra_schema is False
        extra = None if isinstance(extra_schema, bool) else self.compile(extra_schema)

        def check(x: dict[str, Any]) -> bool:
            for name in required:
                if name not in x:
                    return False
            for key, value in x.items():
                prop = props.get(key)
                if prop is not None:
                    if not prop(value):
                        return False
                elif closed or (extra is not None and not extra(value)):
                    return False
            return True

        return check

    def _array(self, schema: Mapping[str, Any]) -> Check | None:
        if not schema.keys() & _ARRAY:
            return None
        item = self.compile(schema["items"]) if "items" in schema else None
        low, high = schema.get("minItems", 0), schema.get("maxItems")

        def check(x: list[Any]) -> bool:
            if len(x) < low or (high is not None and len(x) > high):
                return False
            return item is None or all(item(v) for v in x)

        return check


def _string(schema: Mapping[str, Any]) -> Check | None:
    if not schema.keys() & _STRING:
        return None
    low, high = schema.get("minLength", 0), schema.get("maxLength")
    search = re.compile(schema["pattern"]).search if "pattern" in schema else None
    # Like jsonschema with FormatChecker(["date"]): other formats are annotations only.
    date = schema.get("format") == "date"

    def check(x: str) -> bool:
        n = len(x)
        if n < low or (high is not None and n > high):
            return False
        if search is not None and search(x) is None:
            return False
        return not date or _is_date(x)

    return check


def _number(schema: Mapping[str, Any]) -> list[Check]:
    checks: list[Check] = []
    if "minimum" in schema:
        low = schema["minimum"]
        checks.append(lambda x: not _is_number(x) or x >= low)
    if "maximum" in schema:
        high = schema["maximum"]
        checks.append(lambda x: not _is_number(x) or x <= high)
    return checks


def _enum(values: list[Any]) -> Check:
    if not all(isinstance(v, str) for v in values):
        raise ValueError("fastcheck compiles only enums of strings")  # 1 == True would fool a set
    allowed = frozenset(values)
    return lambda x: isinstance(x, str) and x in allowed
