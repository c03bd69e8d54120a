"""Render contracts/generic_rest.openapi.json as docs/interface.md (the readable page of the interface).

    python scripts/render_interface.py          # write docs/interface.md
    python scripts/render_interface.py --check  # exit 1 when docs/interface.md is not current

tests/unit/test_interface_page.py fails when the committed page is not what this renders.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOCUMENT = ROOT / "contracts" / "generic_rest.openapi.json"
PAGE = ROOT / "docs" / "interface.md"
_RECORDS = ("Customer", "Supplier", "Project", "Invoice", "InvoiceLine", "Address")


def _resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def _type(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return f"[{name}](#{name.lower()})"
    if "anyOf" in schema:
        return " or ".join(_type(s) for s in schema["anyOf"])
    kind = schema.get("type", "any")
    if kind == "array":
        return f"array of {_type(schema.get('items', {}))}"
    bounds = []
    if "enum" in schema:
        values = schema["enum"]
        bounds.append(
            f"one of {len(values)} codes" if len(values) > 12 else " \\| ".join(f"`{v}`" for v in values)
        )
    if "const" in schema:
        bounds.append(f"`{schema['const']}`")
    for key, label in (("minLength", "≥"), ("maxLength", "≤"), ("minimum", "≥"), ("maximum", "≤")):
        if key in schema:
            bounds.append(f"{label} {schema[key]}")
    if "format" in schema:
        bounds.append(schema["format"])
    if "pattern" in schema:
        bounds.append(f"pattern `{schema['pattern']}`")
    return f"{kind} ({', '.join(bounds)})" if bounds else str(kind)


def _example(value: Any) -> list[str]:
    return ["```json", json.dumps(value, indent=2, ensure_ascii=False), "```", ""]


def _operation(
    document: dict[str, Any], path: str, method: str, operation: dict[str, Any], shared: list[Any]
) -> list[str]:
    lines = [f"### `{method.upper()} {{base}}{path}`: {operation.get('summary', '')}", ""]
    if operation.get("description"):
        lines += [operation["description"], ""]
    params = [_resolve(document, p) for p in [*shared, *operation.get("parameters", [])]]
    if params:
        lines += ["| parameter | in | required | schema | meaning |", "|---|---|---|---|---|"]
        for p in params:
            required = "yes" if p.get("required") else "no"
            meaning = p.get("description", "").replace("\n", " ")
            lines.append(f"| `{p['name']}` | {p['in']} | {required} | {_type(p['schema'])} | {meaning} |")
        lines.append("")
    body = operation.get("requestBody")
    if body:
        content = body["content"]["application/json"]
        lines += [
            f"Request body: {_type(content['schema'])}, for example:",
            "",
            *_example(content["example"]),
        ]
    lines += ["| answer | meaning | body |", "|---|---|---|"]
    examples = []
    for status, response in operation["responses"].items():
        response = _resolve(document, response)
        content = response.get("content", {}).get("application/json")
        schema = _type(content["schema"]) if content else "none"
        headers = ", ".join(f"header `{h}`" for h in response.get("headers", {}))
        text = response["description"].replace("\n", " ")
        lines.append(f"| {status} | {text} | {schema}{'; ' + headers if headers else ''} |")
        if content and "example" in content and status in ("200", "201"):
            examples.append((status, content["example"]))
    lines.append("")
    for status, example in examples:
        lines += [f"Answer {status}, for example:", "", *_example(example)]
    return lines


def _schema(document: dict[str, Any], name: str, schema: dict[str, Any]) -> list[str]:
    lines = [f"### {name}", ""]
    if schema.get("description"):
        lines += [schema["description"], ""]
    if "properties" not in schema:
        return [*lines, f"{_type(schema)}", ""]
    required = set(schema.get("required", ()))
    closed = " No other fields." if schema.get("additionalProperties") is False else ""
    lines += [f"An object.{closed}", "", "| field | required | schema | meaning |", "|---|---|---|---|"]
    for field, sub in schema["properties"].items():
        meaning = sub.get("description", "").replace("\n", " ")
        lines.append(f"| `{field}` | {'yes' if field in required else 'no'} | {_type(sub)} | {meaning} |")
    return [*lines, ""]


def render(document: dict[str, Any]) -> str:
    info = document["info"]
    lines = [
        f"# {info['title']} ({info['version']})",
        "",
        "<!-- Generated from contracts/generic_rest.openapi.json by scripts/render_interface.py: "
        "edit the document, then run the script. -->",
        "",
        info["description"].strip(),
        "",
        "## Operations",
        "",
    ]
    for path, item in document["paths"].items():
        shared = item.get("parameters", [])
        for method in ("get", "put", "delete"):
            if method in item:
                lines += _operation(document, path, method, item[method], shared)
    lines += ["## Webhook callback", ""]
    for name, item in document.get("webhooks", {}).items():
        post = item["post"]
        lines += [f"### `POST` to CW's webhook URL: {name}", "", post.get("description", ""), ""]
        content = post["requestBody"]["content"]["application/json"]
        lines += [f"Body: {_type(content['schema'])}, for example:", "", *_example(content["example"])]
    lines += ["## Schemas", ""]
    for name, schema in document["components"]["schemas"].items():
        lines += _schema(document, name, schema)
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    text = render(json.loads(DOCUMENT.read_text(encoding="utf-8")))
    if "--check" in sys.argv[1:]:
        current = PAGE.read_text(encoding="utf-8") if PAGE.exists() else ""
        if current != text:
            print(f"{PAGE.relative_to(ROOT)} is not current: run python scripts/render_interface.py")
            return 1
        return 0
    PAGE.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
