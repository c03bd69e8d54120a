"""docs/interface.md is the rendering of contracts/generic_rest.openapi.json, and it is current."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "render_interface", ROOT / "scripts" / "render_interface.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_page_is_the_rendered_document() -> None:
    script = _script()
    rendered = script.render(json.loads(script.DOCUMENT.read_text(encoding="utf-8")))
    assert (ROOT / "docs" / "interface.md").read_text(encoding="utf-8") == rendered, (
        "docs/interface.md is not current: run `.venv/bin/python scripts/render_interface.py`"
    )


def test_the_page_has_every_operation_rule_and_the_webhook() -> None:
    page = (ROOT / "docs" / "interface.md").read_text(encoding="utf-8")
    document = json.loads((ROOT / "contracts" / "generic_rest.openapi.json").read_text(encoding="utf-8"))
    for path, item in document["paths"].items():
        for method in ("get", "put", "delete"):
            if method in item:
                assert f"`{method.upper()} {{base}}{path}`" in page
    for rule in document["components"]["schemas"]["Rule"]["enum"]:
        assert f"| `{rule}` |" in page
    assert "recordChanged" in page and "webhook-signature" in page


def test_the_document_is_v1_and_its_base_is_the_sandboxs_address() -> None:
    from providers.generic_rest.sandbox.server import DEFAULT_HOST, DEFAULT_PORT

    document = json.loads((ROOT / "contracts" / "generic_rest.openapi.json").read_text(encoding="utf-8"))
    assert document["info"]["version"] == "v1"
    assert all(path.startswith("/v1/") for path in document["paths"])
    [server] = document["servers"]
    assert server["variables"]["base"]["default"] == f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"


def test_the_cw_id_parameter_is_the_same_on_every_record_path() -> None:
    document = json.loads((ROOT / "contracts" / "generic_rest.openapi.json").read_text(encoding="utf-8"))
    schemas = [
        json.dumps(p["schema"], sort_keys=True)
        for path, item in document["paths"].items()
        for p in item.get("parameters", [])
        if p["name"] == "cw_id"
    ]
    assert len(schemas) == 4 and len(set(schemas)) == 1
