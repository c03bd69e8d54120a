"""Echo rules and the CW-field fingerprint: pure functions, no I/O."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from config_db.marks import FINGERPRINT, Mark
from config_db.sync_log import Link
from contracts import Entity, parse_envelope
from providers.errors import MappingError
from worker.messaging.echo import ErpState, Written, echo_reason, reverse_echo
from worker.messaging.fingerprint import DELETED, cw_fields, fields_fingerprint, fingerprint


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
OURS = Written(frozenset({"1", "3"}), frozenset({"hash-1", "hash-3"}))


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
    ("erp", "link", "written", "identity", "expected"),
    [
        (state(), None, Written(), None, None),
        (state(), LINK, OURS, None, None),
        (state(version="3"), LINK, OURS, None, "version 3 is the one we last wrote"),
        (state(version="1"), LINK, OURS, None, "version 1 is one we wrote or applied earlier"),
        (state(version="4", content_hash="hash-3"), LINK, OURS, None, "content is what we last wrote"),
        (state(version=None, content_hash="hash-1"), LINK, OURS, None, "content is what we wrote earlier"),
        (state(version="2"), LINK, OURS, None, "version 2 is older than 3, the one we hold"),
        (state(author="cwi-api"), LINK, OURS, "cwi-api", "author 'cwi-api' is our API user"),
        (state(author="cwi-api"), LINK, OURS, None, None),
        (state(deleted=True), LINK, OURS, None, None),
        (state(deleted=True), Link("GR-1", None, None, True), OURS, None, "already deleted on both sides"),
        (state(version="3"), Link("GR-1", "3", "hash-3", True), Written(), None, None),
        (
            state(version="3"),
            Link("GR-1", "3", "hash-3", True),
            Written(tombstones=frozenset({"3"})),
            None,
            "the record was deleted; the change reported is not newer than its delete",
        ),
        (
            state(version="5"),
            Link("GR-1", "3", "hash-3", True),
            Written(tombstones=frozenset({"3"})),
            None,
            None,
        ),
        (
            state(version="1"),
            None,
            Written(tombstones=frozenset({"2"})),
            None,
            "the record was deleted; the change reported is not newer than its delete",
        ),
        (
            state(version="1"),
            None,
            Written(tombstones=frozenset({""})),
            None,
            "the record was deleted; the change reported is not newer than its delete",
        ),
        (state(deleted=True), None, Written(tombstones=frozenset({"2"})), None, None),
    ],
    ids=[
        "new record",
        "newer version",
        "our last version",
        "an earlier version of ours",
        "newer version, our content",
        "no version, our earlier content",
        "stale",
        "our author",
        "author unknown",
        "deleted in the ERP",
        "our delete",
        "back after a delete older than the window",
        "late webhook after a delete",
        "newer than the delete",
        "late create after a user's delete of a record CW never knew",
        "late create after a delete without a version",
        "a repeated delete of a record CW never knew",
    ],
)
def test_echo_rules(
    erp: ErpState, link: Link | None, written: Written, identity: str | None, expected: str | None
) -> None:
    assert echo_reason(erp, link, written, identity, "integer") == expected


def test_timestamp_versions_are_compared_as_times_and_opaque_ones_only_for_equality() -> None:
    link = Link("U-1", "2026-11-23T10:00:05Z", "h", False)
    stale = state(version="2026-11-23T11:00:01+02:00")  # 09:00:01 UTC
    assert echo_reason(stale, link, Written(), None, "timestamp") == (
        "version 2026-11-23T11:00:01+02:00 is older than 2026-11-23T10:00:05Z, the one we hold"
    )
    assert echo_reason(stale, link, Written(), None, "opaque") is None
    assert echo_reason(state(version="2026-11-23T10:00:06Z"), link, Written(), None, "timestamp") is None


def _marks(*values: str) -> list[tuple[int, Mark]]:
    return [(n, Mark(FINGERPRINT, v)) for n, v in enumerate(values, 1)]


def test_the_reverse_echo_is_exactly_the_fields_we_wrote() -> None:
    ours = fields_fingerprint(Entity.invoice, cw_fields(Entity.invoice, invoice()))
    link = Link("GR-1", "3", "h", False, ours)
    earlier = fields_fingerprint(Entity.invoice, cw_fields(Entity.invoice, invoice(reference="first")))
    assert reverse_echo(event(invoice(id="inv-1")), link, _marks(earlier, ours)) == 2
    assert reverse_echo(event(invoice(reference="first")), link, _marks(earlier, ours)) == 1
    assert reverse_echo(event(invoice(reference="changed in CW")), link, _marks(earlier, ours)) is None
    assert reverse_echo(event(invoice()), Link("GR-1", "3", "h", False), _marks(ours)) is None
    assert reverse_echo(event(None, "deleted"), link, _marks(ours)) is None
    assert reverse_echo(event(None, "deleted"), Link("GR-1", "4", None, True, DELETED), _marks(DELETED)) == 1
