"""contracts/generic_rest.openapi.json: valid OpenAPI 3.1, and its record schemas are the CW records.

When the records in contracts/records.py change, refresh the document's copies with
``.venv/bin/python -m tests.unit.test_generic_rest_openapi`` and review the diff.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from contracts.codes import COUNTRY_CODES, CURRENCY_CODES
from contracts.records import Customer, Invoice, Project, Supplier
from tests.openapi import SpecViolation, load_spec

DOCUMENT = Path(__file__).resolve().parents[2] / "contracts" / "generic_rest.openapi.json"
RECORD_MODELS: dict[str, type[BaseModel]] = {
    "customer": Customer,
    "supplier": Supplier,
    "project": Project,
    "invoice": Invoice,
}
# The form str(Decimal) and model_dump(mode="json") produce for finite decimals.
DECIMAL_STRING = r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$"


def record_schemas() -> dict[str, Any]:
    """The CW records' JSON schemas (validation mode), as the document must carry them."""
    _, top = models_json_schema(
        [(model, "validation") for model in RECORD_MODELS.values()],
        ref_template="#/components/schemas/{model}",
    )
    schemas: dict[str, Any] = top["$defs"]
    # The ISO code checks are AfterValidators, invisible to pydantic's schema: spell them out.
    schemas["Address"]["properties"]["country"]["enum"] = sorted(COUNTRY_CODES)
    schemas["Invoice"]["properties"]["currency"]["enum"] = sorted(CURRENCY_CODES)
    for name in ("quantity", "unit_price", "vat_rate"):
        for alternative in schemas["InvoiceLine"]["properties"][name]["anyOf"]:
            if alternative["type"] == "string":
                alternative["pattern"] = DECIMAL_STRING
    # A record created in the ERP has no CW id yet: listings and webhooks carry its fields alone.
    for model in RECORD_MODELS.values():
        fields = copy.deepcopy(schemas[model.__name__])
        del fields["properties"]["id"]
        fields["required"].remove("id")
        fields["title"] = f"{model.__name__}Fields"
        schemas[f"{model.__name__}Fields"] = fields
    return schemas


def _document() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DOCUMENT.read_text())
    return document


def test_document_is_valid_openapi_3_1() -> None:
    document = _document()
    assert document["openapi"].startswith("3.1")
    validate(document)


@pytest.mark.parametrize("name", sorted(record_schemas()))
def test_record_schemas_match_the_pydantic_models(name: str) -> None:
    documented = _document()["components"]["schemas"].get(name)
    assert documented == record_schemas()[name], (
        f"components/schemas/{name} drifted from contracts/records.py: "
        "run `.venv/bin/python -m tests.unit.test_generic_rest_openapi` and review the diff"
    )


@pytest.mark.parametrize("entity", sorted(RECORD_MODELS))
def test_each_entity_has_put_get_delete_with_its_record_schema(entity: str) -> None:
    spec = load_spec("generic_rest.openapi.json")
    path = f"/v1/{entity}/c-1"
    for method in ("put", "get", "delete"):
        assert "responses" in spec.operation(method, path)
    item = spec.document["paths"][f"/v1/{entity}/{{cw_id}}"]
    key = {"$ref": "#/components/parameters/IdempotencyKey"}
    assert key in item["put"]["parameters"] and key in item["delete"]["parameters"]
    assert "parameters" not in item["get"]  # a read needs no Idempotency-Key
    schema = spec.request_schema("put", path)
    assert schema == {"$ref": f"#/components/schemas/{RECORD_MODELS[entity].__name__}"}


def test_a_dumped_record_validates_and_an_unknown_field_does_not() -> None:
    spec = load_spec("generic_rest.openapi.json")
    customer = Customer(id="c-1", number="1001", name="Acme AS", org_number="923609016")
    spec.validate_request("put", "/v1/customer/c-1", customer.model_dump(mode="json"))
    with pytest.raises(SpecViolation, match="nickname"):
        spec.validate_request(
            "put", "/v1/customer/c-1", {**customer.model_dump(mode="json"), "nickname": "x"}
        )


def test_webhook_event_types_cover_every_entity_and_action() -> None:
    event = _document()["components"]["schemas"]["WebhookEvent"]
    types = set(event["properties"]["type"]["enum"])
    assert types == {f"{e}.{a}" for e in RECORD_MODELS for a in ("created", "updated", "deleted")}


def _refresh() -> None:
    document = _document()
    document["components"]["schemas"].update(record_schemas())
    DOCUMENT.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    _refresh()


# The sandbox's compiled validators must agree with jsonschema on the same document.

_SAMPLES: dict[str, dict[str, Any]] = {
    "customer": {
        "id": "c-1",
        "number": "1001",
        "name": "Acme AS",
        "org_number": "923609016",
        "email": None,
        "address": {"street": "Storgata 1", "postal_code": "0155", "city": "Oslo", "country": "NO"},
    },
    "supplier": {"id": "s-1", "number": "2001", "name": "Bolt AS"},
    "project": {"id": "p-1", "number": "7", "name": "Roof", "customer_id": "c-1", "start_date": "2025-03-01"},
    "invoice": {
        "id": "i-1",
        "number": "10001",
        "customer_id": "c-1",
        "customer_number": "1001",
        "invoice_date": "2025-03-31",
        "due_date": "2025-04-14",
        "currency": "NOK",
        "lines": [{"description": "Labour", "quantity": "7.5", "unit_price": 950, "vat_rate": "25"}],
    },
}
_ODD_VALUES: list[Any] = [
    None,
    5,
    2.5,
    -1,
    101,
    True,
    "",
    "x" * 256,
    [],
    {},
    "2024-02-30",
    "2024-02-29",
    "abc",
    "NOK",
    "no",
    "-1.5e3",
]


def _variants(value: Any) -> list[Any]:
    """``value`` with one thing changed: each field set to each odd value, removed, or one field added."""
    out: list[Any] = []
    if isinstance(value, dict):
        out.append({**value, "unexpected": 1})
        for key, inner in value.items():
            out.append({k: v for k, v in value.items() if k != key})
            out.extend({**value, key: odd} for odd in [*_ODD_VALUES, *_variants(inner)])
    elif isinstance(value, list) and value:
        out.append([])
        out.extend([variant, *value[1:]] for variant in _variants(value[0]))
    return out


@pytest.mark.parametrize("entity", sorted(_SAMPLES))
def test_the_sandbox_fast_check_agrees_with_jsonschema(entity: str) -> None:
    from providers.generic_rest.sandbox.rules import RequestRules, load_document

    schema = RequestRules(load_document()).bodies[entity]
    outcomes = []
    for body in [_SAMPLES[entity], *_variants(_SAMPLES[entity])]:
        expected = schema.validator.is_valid(body)
        assert schema.check(body) == expected, f"fastcheck and jsonschema disagree on {body!r}"
        outcomes.append(expected)
    assert outcomes[0] is True
    assert outcomes.count(True) > 5 and outcomes.count(False) > 20
