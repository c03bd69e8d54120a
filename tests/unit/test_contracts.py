"""The envelope and CW records: what is accepted, and errors that name the field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from contracts import (
    Action,
    Entity,
    InvalidEnvelopeError,
    Invoice,
    Source,
    envelope_json_schema,
    parse_envelope,
)
from contracts.reasons import DeadLetterReason, describe_reasons


def _env(**over: Any) -> dict[str, Any]:
    env: dict[str, Any] = {
        "id": "e1",
        "client_id": "acme",
        "type": "invoice.created",
        "source": "frontend",
        "occurred_at": "2026-11-23T10:00:00Z",
        "data": {
            "id": "inv-1",
            "number": "1001",
            "customer_id": "cus-1",
            "customer_number": "10001",
            "invoice_date": "2026-11-20",
            "due_date": "2026-12-04",
            "currency": "NOK",
            "lines": [{"description": "Work", "quantity": "2", "unit_price": "1250.50", "vat_rate": 25}],
        },
    }
    env.update(over)
    return env


def _problems(env: dict[str, Any]) -> list[str]:
    with pytest.raises(InvalidEnvelopeError) as info:
        parse_envelope(json.dumps(env))
    return info.value.problems


def test_valid_invoice_envelope_parses_with_decimals() -> None:
    env = parse_envelope(json.dumps(_env()))
    assert (env.entity, env.action, env.source, env.cw_id) == (
        Entity.invoice,
        Action.created,
        Source.frontend,
        "inv-1",
    )
    assert isinstance(env.data, Invoice)
    assert str(env.data.lines[0].unit_price) == "1250.50"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"type": "invoice.shipped"}, "type: "),
        ({"type": "order.created"}, "type must be '<entity>.<action>'"),
        ({"source": "cron"}, "source: "),
        ({"occurred_at": "2026-11-23T10:00:00"}, "occurred_at: "),
        ({"client_id": "bad client!"}, "client_id: "),
        ({"extra": 1}, "extra: "),
    ],
)
def test_envelope_errors_name_the_field(change: dict[str, Any], expected: str) -> None:
    assert any(p.startswith(expected) for p in _problems(_env(**change)))


def test_record_errors_name_the_nested_field() -> None:
    env = _env()
    env["data"]["currency"] = "XYZ"
    env["data"]["lines"][0]["vat_rate"] = 125
    problems = _problems(env)
    assert "data.currency: 'XYZ' is not an ISO 4217 currency code (e.g. 'NOK')" in problems
    assert any(p.startswith("data.lines[0].vat_rate:") for p in problems)


def test_invoice_needs_a_line_and_due_after_issue() -> None:
    env = _env()
    env["data"]["lines"] = []
    assert any(p.startswith("data.lines:") for p in _problems(env))
    env = _env()
    env["data"]["due_date"] = "2026-01-01"
    assert any("due_date is before invoice_date" in p for p in _problems(env))


def test_strict_types_are_not_coerced() -> None:
    env = _env()
    env["data"]["number"] = 1001
    assert any(p.startswith("data.number:") for p in _problems(env))


def test_country_must_be_iso_alpha2() -> None:
    env = _env(
        type="customer.created",
        data={
            "id": "c",
            "number": "1",
            "name": "A",
            "address": {"street": "s", "postal_code": "1", "city": "c", "country": "Norway"},
        },
    )
    assert any(p.startswith("data.address.country:") for p in _problems(env))


def test_delete_may_name_the_record_without_data() -> None:
    env = parse_envelope(json.dumps(_env(type="customer.deleted", data=None, record_id="cus-9")))
    assert env.cw_id == "cus-9" and env.data is None
    assert any("record_id is required" in p for p in _problems(_env(type="customer.deleted", data=None)))
    thin = parse_envelope(json.dumps(_env(type="customer.updated", data=None, record_id="cus-9")))
    assert thin.cw_id == "cus-9" and thin.data is None and not thin.inbound
    assert any("record_id is required" in p for p in _problems(_env(type="customer.created", data=None)))


def test_webhook_events_carry_the_external_change() -> None:
    external = {"provider": "tripletex", "external_id": "77", "version": "3", "value": {"name": "A"}}
    env = parse_envelope(
        json.dumps(_env(type="customer.updated", source="webhook", data=None, external=external))
    )
    assert env.inbound and env.external is not None and env.external.external_id == "77"
    with pytest.raises(ValueError, match="names no CW record"):
        _ = env.cw_id
    assert any("external is required" in p for p in _problems(_env(source="webhook", data=None)))
    assert any("only allowed on webhook" in p for p in _problems(_env(external=external)))


@pytest.mark.parametrize(("field", "most"), [("external_id", 255), ("version", 64), ("event_id", 255)])
def test_an_external_change_names_nothing_longer_than_the_sync_log_keeps(field: str, most: int) -> None:
    """A longer version or event id failed the journal's (or the receipt's) insert on PostgreSQL."""
    external = {"provider": "tripletex", "external_id": "77", field: "v" * (most + 1)}
    change = _env(type="customer.updated", source="webhook", data=None, external=external)
    assert any(p.startswith(f"external.{field}: ") and str(most) in p for p in _problems(change))
    external[field] = "v" * most
    env = parse_envelope(
        json.dumps(_env(type="customer.updated", source="webhook", data=None, external=external))
    )
    assert env.external is not None and getattr(env.external, field) == "v" * most


def test_an_operator_event_may_carry_an_erp_change_for_the_inbound_path() -> None:
    external = {"provider": "tripletex", "external_id": "77", "version": "3", "value": {"name": "A"}}
    raw = _env(type="customer.updated", source="operator", data=None, record_id="cus-9", external=external)
    env = parse_envelope(json.dumps(raw))
    assert env.inbound and env.cw_id == "cus-9"
    assert any(
        "data (a CW change) or external" in p for p in _problems(_env(source="operator", external=external))
    )


def test_no_string_may_hold_a_nul_character_which_no_journal_could_store() -> None:
    """PostgreSQL's text refuses NUL: an id with one made the journal fail on every delivery (a
    traceback each, then MaxDeliveryCountExceeded); now it is an invalid envelope, named."""
    external = {"provider": "tripletex", "external_id": "7\x007", "value": {"na\x00me": "A"}}
    problems = _problems(_env(id="e\x001", data={**_env()["data"], "number": "10\x0001"}))
    assert problems == [
        "id: a NUL character (\\u0000) is not allowed",
        "data.number: a NUL character (\\u0000) is not allowed",
    ]
    inbound = _problems(_env(type="customer.updated", source="webhook", data=None, external=external))
    assert inbound == [
        "external.external_id: a NUL character (\\u0000) is not allowed",
        "external.value.na\x00me: a NUL character (\\u0000) is not allowed",
    ]
    # The escape written as text (a backslash, then u0000) is no NUL: accepted as before.
    assert parse_envelope(json.dumps(_env(id="e\\u0000"))).id == "e\\u0000"
    assert parse_envelope(json.dumps(_env()).encode()).id == "e1"


def test_not_json_is_reported() -> None:
    with pytest.raises(InvalidEnvelopeError, match="Invalid JSON"):
        parse_envelope(b"{nope")


def test_json_schema_describes_every_entity() -> None:
    schema = json.dumps(envelope_json_schema())
    for name in ("CustomerEnvelope", "SupplierEnvelope", "ProjectEnvelope", "InvoiceEnvelope", "InvoiceLine"):
        assert name in schema


def test_every_reason_is_documented() -> None:
    described = describe_reasons()
    assert set(described) == {r.value for r in DeadLetterReason}
    assert all(text.strip() for text in described.values())


def _invoice_problems(**data: Any) -> list[str]:
    env = _env()
    env["data"] = {**env["data"], **data}
    return _problems(env)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"invoice_date": "0"}, "data.invoice_date: must be an ISO 8601 date like 2026-11-23, not '0'"),
        ({"due_date": "86400"}, "data.due_date: must be an ISO 8601 date like 2026-11-23, not '86400'"),
        ({"due_date": 86400}, "data.due_date: must be an ISO 8601 date like 2026-11-23, not 86400"),
        ({"id": " inv-1"}, "data.id: must not begin or end with white space: ' inv-1'"),
        ({"customer_id": "c-1\n"}, "data.customer_id: must not begin or end with white space: 'c-1\\n'"),
    ],
    ids=["date zero", "date as seconds", "date as number", "id with a space", "id with a newline"],
)
def test_dates_are_iso_strings_and_ids_have_no_surrounding_space(change: dict[str, Any], field: str) -> None:
    assert field in _invoice_problems(**change)


@pytest.mark.parametrize("occurred_at", ["1700000000", "2026-11-23T10:00:00", "2026-11-23"])
def test_occurred_at_is_an_iso_date_time_with_an_offset(occurred_at: str) -> None:
    [problem] = _problems(_env(occurred_at=occurred_at))
    assert problem.startswith("occurred_at: must be an ISO 8601 date-time with an offset")


@pytest.mark.parametrize("amount", ["1E+999999", "123456789012345678901", "0.0000001"])
def test_amounts_are_bounded(amount: str) -> None:
    line = {"description": "Work", "quantity": amount, "unit_price": "100.00", "vat_rate": "25"}
    [problem] = _invoice_problems(lines=[line])
    assert problem.startswith("data.lines[0].quantity: Decimal input should have no more than")
