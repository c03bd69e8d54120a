"""Echo rules and the CW-field fingerprint: pure functions, no I/O."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from config_db.sync_log import Link
from contracts import Entity, parse_envelope
from providers.errors import MappingError
from worker.inbound.echo import ErpState, echo_reason, is_reverse_echo
from worker.inbound.fingerprint import DELETED, cw_fields, fields_fingerprint, fingerprint


def invoice(**over: Any) -> dict[str, Any]:
    line = {"description": "Work", "quantity": "2", "unit_price": "100.00", "vat_rate": "25"}
    return {
        "id": "inv-1",
        "number": "1001",
        "customer_id": "c-1",
        "customer_number": "10001",
        "invoice_date": "2026-11-01",
        "due_date": "2026-11-15",
        "currency": "NOK",
        "lines": [line],
        **over,
    }


def event(data: dict[str, Any] | None, action: str = "updated") -> Any:
    body: dict[str, Any] = {
        "id": "e-1",
        "client_id": "acme",
        "type": f"invoice.{action}",
        "source": "frontend",
        "occurred_at": "2026-11-23T10:00:00Z",
    }
    body |= {"data": data} if data is not None else {"record_id": "inv-1"}
    return parse_envelope(json.dumps(body))


def test_the_fingerprint_ignores_the_id_and_normalises_decimals() -> None:
    written = cw_fields(Entity.invoice, invoice())
    assert "id" not in written
    line = {"description": "Work", "quantity": "2.000", "unit_price": "1E+2", "vat_rate": "25.0"}
    stored = event(invoice(id="cw-9", lines=[line])).data
    assert fields_fingerprint(Entity.invoice, written) == fingerprint(stored)


@pytest.mark.parametrize(
    "change",
    [{"number": "1002"}, {"reference": "PO 7"}, {"due_date": "2026-11-16"}],
    ids=["field", "added optional", "date"],
)
def test_any_real_difference_changes_the_fingerprint(change: dict[str, Any]) -> None:
    base = fields_fingerprint(Entity.invoice, cw_fields(Entity.invoice, invoice()))
    assert fingerprint(event(invoice(**change)).data) != base


def test_a_price_change_of_one_ore_changes_the_fingerprint() -> None:
    line = {"description": "Work", "quantity": "2", "unit_price": "100.01", "vat_rate": "25"}
    base = fields_fingerprint(Entity.invoice, cw_fields(Entity.invoice, invoice()))
    assert fingerprint(event(invoice(lines=[line])).data) != base
    assert Decimal("100.01") != Decimal("100.00")


def test_fields_that_are_not_a_valid_cw_record_are_a_mapping_error_naming_the_field() -> None:
    with pytest.raises(MappingError, match="currency"):
        cw_fields(Entity.invoice, invoice(currency="XYZ"))


LINK = Link("GR-1", "3", "hash-3", False)


def state(**over: Any) -> ErpState:
    values: dict[str, Any] = {
        "deleted": False,
        "value": {},
        "version": "4",
        "author": "kari",
        "content_hash": "h4",
    }
    return ErpState(**(values | over))


@pytest.mark.parametrize(
    ("erp", "link", "api_user", "expected"),
    [
        (state(), None, None, None),
        (state(), LINK, None, None),
        (state(version="3"), LINK, None, "version 3 is the one we last wrote"),
        (state(content_hash="hash-3"), LINK, None, "content is what we last wrote"),
        (state(version="2"), LINK, None, "version 2 is older than 3, the one we hold"),
        (state(author="cwi-api"), LINK, "cwi-api", "author 'cwi-api' is our API user"),
        (state(author="cwi-api"), LINK, None, None),
        (state(deleted=True), LINK, None, None),
        (state(deleted=True), Link("GR-1", None, None, True), None, "already deleted on both sides"),
        (state(version="3"), Link("GR-1", "3", "hash-3", True), None, None),
    ],
    ids=[
        "new record",
        "newer version",
        "our version",
        "our content",
        "stale",
        "our author",
        "author rule off",
        "deleted in the ERP",
        "our delete",
        "revived",
    ],
)
def test_echo_rules(erp: ErpState, link: Link | None, api_user: str | None, expected: str | None) -> None:
    assert echo_reason(erp, link, api_user) == expected


def test_the_reverse_echo_is_exactly_the_fields_we_wrote() -> None:
    ours = fields_fingerprint(Entity.invoice, cw_fields(Entity.invoice, invoice()))
    link = Link("GR-1", "3", "h", False, ours)
    assert is_reverse_echo(event(invoice(id="inv-1")), link)
    assert not is_reverse_echo(event(invoice(reference="changed in CW")), link)
    assert not is_reverse_echo(event(invoice()), Link("GR-1", "3", "h", False))
    assert not is_reverse_echo(event(None, "deleted"), link)
    assert is_reverse_echo(event(None, "deleted"), Link("GR-1", "4", None, True, DELETED))
