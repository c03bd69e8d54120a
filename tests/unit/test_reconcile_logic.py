"""Reconciliation's pure parts: field comparison, matching, the repair of each finding."""

from __future__ import annotations

import json

from config_db.sync_log import Link
from contracts import Entity, parse_envelope
from providers.listing import Listed
from worker.reconcile.compare import CWState, Kind, differences
from worker.reconcile.matching import judge, judge_unpaired, match
from worker.reconcile.repair import plan
from worker.reconcile.sides import ErpSide

INVOICE = {
    "number": "INV-1",
    "customer_id": "c-1",
    "customer_number": "10001",
    "invoice_date": "2026-11-01",
    "due_date": "2026-11-15",
    "currency": "NOK",
    "lines": [
        {"description": "Work", "quantity": "2.00", "unit_price": "100", "vat_rate": "25", "account": "3000"}
    ],
}
CUSTOMER = {"number": "10001", "name": "Acme AS", "email": "a@acme.no"}


def test_amounts_compare_by_value_and_only_what_the_erp_carries() -> None:
    # The ERP's lines have no account; its amounts are written another way.
    erp_line = {"description": "Work", "quantity": "2", "unit_price": "100.0", "vat_rate": "25.00"}
    assert differences(Entity.invoice, INVOICE, {**INVOICE, "lines": [erp_line]}) == ()
    changed = differences(
        Entity.invoice, INVOICE, {"lines": [{**erp_line, "quantity": "3"}], "number": "INV-1"}
    )
    assert [(d.field, d.cw[0]["quantity"], d.erp[0]["quantity"]) for d in changed] == [("lines", "2", "3")]
    assert "account" not in changed[0].erp[0]


def test_a_field_is_compared_with_both_values_and_a_missing_one_too() -> None:
    found = differences(
        Entity.customer, CUSTOMER, {"name": "Acme Holding AS", "email": None, "number": "10001"}
    )
    assert [(d.field, d.cw, d.erp) for d in found] == [
        ("email", "a@acme.no", None),
        ("name", "Acme AS", "Acme Holding AS"),
    ]


def _side(external_id: str, number: str, name: str = "Acme AS", *, deleted: bool = False) -> ErpSide:
    fields = {**CUSTOMER, "number": number, "name": name}
    listed = Listed(external_id, None if deleted else fields, version="3")
    return ErpSide(listed, None if deleted else fields, number)


def test_records_pair_by_link_then_by_number_never_with_a_record_linked_elsewhere() -> None:
    cw = {
        "c-1": CWState("c-1", 4, {**CUSTOMER, "number": "1"}),
        "c-2": CWState("c-2", 1, {**CUSTOMER, "number": "2"}),
        "c-3": CWState("c-3", 1, {**CUSTOMER, "number": "3"}),
    }
    links = {"c-1": Link("77", "2", None, False), "c-3": Link("99", "1", None, False)}
    erp = [_side("77", "1"), _side("88", "2"), _side("55", "3")]
    matched = match(cw, erp, links)
    assert {k: v.listed.external_id for k, v in matched.pairs.items()} == {"c-1": "77", "c-2": "88"}
    assert [s.listed.external_id for s in matched.unpaired] == ["55"], "c-3 is linked to 99"
    assert judge(Entity.customer, cw["c-3"], None, links["c-3"]).kind is Kind.gone  # type: ignore[union-attr]
    assert judge(Entity.customer, cw["c-2"], None, None).kind is Kind.missing_in_erp  # type: ignore[union-attr]
    unpaired = judge_unpaired(Entity.customer, matched.unpaired[0])
    assert unpaired is not None and unpaired.kind is Kind.missing_in_cw and unpaired.cw_id is None
    deleted_in_cw = CWState("c-1", 5, None)
    assert judge(Entity.customer, deleted_in_cw, _side("77", "1", deleted=True), links["c-1"]) is None


def test_each_finding_is_repaired_by_the_winning_side_as_an_ordinary_event() -> None:
    state = CWState("c-1", 4, {**CUSTOMER})
    different = judge(Entity.customer, state, _side("77", "10001", "Renamed"), Link("77", "2", None, False))
    assert different is not None and different.kind is Kind.different
    push = plan("acme", "tripletex", different, "cw")
    assert push.envelope is not None
    env = parse_envelope(json.dumps(push.envelope))
    assert (env.source.value, env.type, env.record_id, env.sequence, env.data) == (
        "operator",
        "customer.updated",
        "c-1",
        4,
        None,
    ), "a thin event: the worker reads CW's newest state when it pushes"
    assert plan("acme", "tripletex", different, "cw").envelope["id"] == env.id  # type: ignore[index]
    apply = plan("acme", "tripletex", different, "erp")
    assert apply.envelope is not None
    inbound = parse_envelope(json.dumps(apply.envelope))
    assert inbound.inbound and inbound.external is not None and inbound.external.value is not None
    assert inbound.external.value["name"] == "Renamed" and inbound.id != env.id
    missing = judge(Entity.customer, state, None, None)
    assert missing is not None
    decide = plan("acme", "tripletex", missing, "erp")
    assert decide.envelope is None and "reconcile_winner.customer=cw" in decide.note
