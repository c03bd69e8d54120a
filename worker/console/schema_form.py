"""A form generated from the envelope's JSON Schema (``contracts.envelope_json_schema()``), and back.

Every leaf of the envelope becomes one field named by its path (``data.name``,
``data.lines[0].quantity``), typed and constrained as the schema says (required, lengths,
pattern, bounds, enums), so the browser checks what it can; the server validates the whole
envelope against the contract again before anything is sent. Objects and arrays of objects are
walked; other arrays and free-form objects (``external.value``) are edited as JSON text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from contracts import envelope_json_schema, jsontext

_INDEX = re.compile(r"^(.*)\[(\d+)\]$")


@dataclass(slots=True)
class FormField:
    path: str
    label: str
    kind: str  # text | number | integer | date | datetime | enum | json | bool
    value: str
    required: bool = False
    readonly: bool = False
    options: list[str] = field(default_factory=list)
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    nullable: bool = False
    help: str = ""


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str):
        return _resolve(schema, schema["$defs"][ref.rsplit("/", 1)[1]])
    return node


def _variant(schema: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for option in schema.get("oneOf", []):
        node = _resolve(schema, option)
        if kind in node["properties"]["type"].get("enum", []):
            return node
    return None


def _unwrap(
    schema: dict[str, Any], node: dict[str, Any]
) -> tuple[dict[str, Any], bool, list[dict[str, Any]]]:
    """The node without its ``null`` alternative; whether null is allowed; the other alternatives."""
    node = _resolve(schema, node)
    alternatives = [_resolve(schema, a) for a in node.get("anyOf", [])]
    if not alternatives:
        return node, False, []
    nullable = any(a.get("type") == "null" for a in alternatives)
    rest = [a for a in alternatives if a.get("type") != "null"]
    return (rest[0] if len(rest) == 1 else {"anyOf": rest}), nullable, rest


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, indent=2)
    return str(value)


def fields(envelope: dict[str, Any]) -> list[FormField]:
    schema = envelope_json_schema()
    variant = _variant(schema, str(envelope.get("type")))
    if variant is None:
        return [FormField("", "envelope (JSON)", "json", _text(envelope), required=True)]
    out: list[FormField] = []
    _walk(schema, variant, envelope, "", out, required=True)
    for f in out:
        if f.path in ("id", "client_id", "type", "source"):
            f.readonly = True
            f.help = "fixed: an edit is sent as a new message of the same client and type"
    return out


def _walk(
    schema: dict[str, Any],
    node: dict[str, Any],
    value: Any,
    path: str,
    out: list[FormField],
    *,
    required: bool,
) -> None:
    node, nullable, alternatives = _unwrap(schema, node)
    kind = node.get("type")
    if kind == "object" and "properties" in node and (isinstance(value, dict) or value is None):
        if value is None:
            out.append(FormField(path, path, "json", "", required=False, nullable=True, help="empty: none"))
            return
        needed = set(node.get("required", []))
        for name, child in node["properties"].items():
            child_path = f"{path}.{name}" if path else name
            _walk(schema, child, value.get(name), child_path, out, required=name in needed)
        return
    if kind == "array" and isinstance(value, list):
        item = _resolve(schema, node.get("items", {}))
        if item.get("type") == "object" and "properties" in item and all(isinstance(v, dict) for v in value):
            for n, element in enumerate(value):
                _walk(schema, item, element, f"{path}[{n}]", out, required=True)
            return
    out.append(_leaf(node, alternatives, value, path, required=required, nullable=nullable))


def _leaf(
    node: dict[str, Any], alternatives: list[dict[str, Any]], value: Any, path: str, *, required: bool,
    nullable: bool,
) -> FormField:  # fmt: skip
    types = {a.get("type") for a in alternatives} if alternatives else {node.get("type")}
    f = FormField(path, path, "text", _text(value), required=required and not nullable, nullable=nullable)
    f.help = str(node.get("description", ""))
    if "enum" in node:
        f.kind, f.options = "enum", [str(x) for x in node["enum"]]
    elif types == {"integer"}:
        f.kind = "integer"
    elif "number" in types:
        f.kind, f.help = "number", f.help or "a decimal number"
    elif types == {"boolean"}:
        f.kind, f.options = "bool", ["true", "false"]
    elif types & {"object", "array"} or not types - {None}:
        f.kind = "json"
    elif node.get("format") == "date":
        f.kind = "date"
    elif node.get("format") == "date-time":
        f.kind = "datetime"
    source = next((a for a in alternatives if a.get("type") in ("string", "integer", "number")), node)
    f.min_length, f.max_length = source.get("minLength"), source.get("maxLength")
    f.pattern = source.get("pattern")
    f.minimum, f.maximum = source.get("minimum"), source.get("maximum")
    return f


def _convert(f: FormField, raw: str, original: Any) -> Any:
    raw = raw.strip() if f.kind != "json" else raw
    if raw == "" and (f.nullable or not f.required):
        return None
    if f.kind == "json":
        return jsontext.loads(raw)  # an operator's text: nesting bounded, a ValueError past it
    if f.kind == "integer":
        return int(raw)
    if f.kind == "number":
        if isinstance(original, str) or original is None:
            return raw
        number = json.loads(raw)
        if not isinstance(number, int | float):
            raise ValueError("not a number")
        return number
    if f.kind == "bool":
        return raw == "true"
    return raw


def _assign(target: dict[str, Any], path: str, value: Any, *, drop: bool) -> None:
    parts = path.split(".")
    node: Any = target
    for part in parts[:-1]:
        node = _step(node, part)
    last = parts[-1]
    match = _INDEX.match(last)
    if match:
        _step(node, match.group(1))[int(match.group(2))] = value
    elif drop:
        node.pop(last, None)
    else:
        node[last] = value


def _step(node: Any, part: str) -> Any:
    match = _INDEX.match(part)
    if match:
        return node[match.group(1)][int(match.group(2))]
    return node[part]


def apply(envelope: dict[str, Any], form: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
    """The envelope with the form's values; one problem line per field that does not convert."""
    result = json.loads(json.dumps(envelope))
    problems = []
    for f in fields(envelope):
        if f.readonly or f.path not in form:
            continue
        original = _original(envelope, f.path)
        try:
            value = _convert(f, form[f.path], original)
        except ValueError as exc:
            problems.append(f"{f.path}: {'not valid JSON' if f.kind == 'json' else exc}")
            continue
        if f.path == "":
            return (value if isinstance(value, dict) else result), problems
        _assign(result, f.path, value, drop=value is None and original is None)
    return result, problems


def _original(envelope: dict[str, Any], path: str) -> Any:
    node: Any = envelope
    try:
        for part in path.split("."):
            node = _step(node, part)
    except (KeyError, IndexError, TypeError):
        return None
    return node
