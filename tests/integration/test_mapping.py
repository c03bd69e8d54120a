"""Mapping validation against the ERP (the Tripletex fake, CW's recent invoices), and a mapping
exported from one client and imported into another."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal
from functools import partial

from config_db import clients
from contracts import Entity, Invoice, InvoiceLine
from tests.integration.reconcile_rig import CLIENT, reconcile_rig
from worker.reconcile.mapping_file import FORMAT, MappingFileError, changes, export, merged, parse
from worker.reconcile.validate import validate_client


def _invoice(n: int, rate: str) -> dict[str, object]:
    line = InvoiceLine(
        description="Work", quantity=Decimal(1), unit_price=Decimal(100), vat_rate=Decimal(rate)
    )
    invoice = Invoice(
        id=f"i-{n}",
        number=f"INV-{n}",
        customer_id="c-1",
        customer_number="10001",
        invoice_date=dt.date.today(),
        due_date=dt.date.today(),
        currency="NOK",
        lines=[line],
    )
    return invoice.model_dump(mode="json")


async def test_validation_names_what_the_erp_lacks_and_rates_without_a_mapping(sqlite_url: str) -> None:
    async with reconcile_rig(sqlite_url, "tripletex", department_id="77", currency="NOK") as rig:
        for n, rate in ((1, "25"), (2, "15"), (3, "15.00")):
            rig.cw.cw.seed(CLIENT, Entity.invoice, _invoice(n, rate))
        found = await validate_client(rig.app, CLIENT)
        by_setting = {p.setting: p.message for p in found.problems}
        assert set(by_setting) == {"department_id", "vat_code.15"}, by_setting
        assert "no department id 77" in by_setting["department_id"]
        assert "--setting department_id=" in by_setting["department_id"]
        assert "used by 2 recent invoice(s)" in by_setting["vat_code.15"]
        assert "cwi connections set acme tripletex --setting vat_code.15=" in by_setting["vat_code.15"]

        fixed = {**rig.spec().settings, "department_id": "1", "vat_code.15": "31", "nonsense": "1"}
        again = await validate_client(rig.app, CLIENT, fixed)
        assert [p.setting for p in again.problems] == ["nonsense"], "unknown settings first, then the ERP"
        del fixed["nonsense"]
        assert (await validate_client(rig.app, CLIENT, fixed)).problems == ()


def test_a_mapping_travels_without_credentials_or_company_ids() -> None:
    source = clients.StoredConnection(
        "acme",
        "tripletex",
        "https://tripletex.no/v2",
        {"vat_code.25": "3", "project_manager_id": "11", "send_invoices": "true"},
        "ciphertext-of-credentials",
        True,
    )
    exported = export(source)
    assert exported == {
        "format": FORMAT,
        "provider": "tripletex",
        "settings": {"send_invoices": "true", "vat_code.25": "3"},
        "base_url": "https://tripletex.no/v2",
        "left_out": ["project_manager_id"],
    }
    assert "project_manager_id" in export(source, include_ids=True)["settings"]

    import json

    file = parse(json.dumps(exported))
    target = dataclasses.replace(
        source,
        client_id="globex",
        settings={"project_manager_id": "42", "vat_code.0": "6", "vat_code.25": "5"},
    )
    after = merged(target, file)
    assert after == {"project_manager_id": "42", "send_invoices": "true", "vat_code.25": "3"}
    assert changes(target.settings, after) == [
        "+ send_invoices=true",
        "- vat_code.0 (was 6)",
        "~ vat_code.25: 5 → 3",
    ]
    other_kind = dataclasses.replace(target, kind="visma_net")
    try:
        merged(other_kind, file)
        raise AssertionError("a Tripletex mapping must not go into a Visma.net connection")
    except MappingFileError as exc:
        assert "tripletex mapping" in str(exc)
    for bad, problem in (
        ("{", "not JSON"),
        ('{"format": "x"}', "not a mapping file"),
        (json.dumps({**exported, "settings": {"vat_code.25": "high"}}), "vat_code.25"),
        (json.dumps({**exported, "provider": "sap"}), "'sap' is not available"),
    ):
        try:
            parse(bad)
            raise AssertionError(bad)
        except MappingFileError as exc:
            assert problem in str(exc)


async def test_import_is_validated_against_the_target_erp(sqlite_url: str) -> None:
    async with reconcile_rig(sqlite_url, "tripletex") as rig:
        stored = rig.app.db.run_sync(partial(clients.get_connection, client_id=CLIENT))
        assert stored is not None
        imported = {**stored.settings, "vat_code.25": "4444"}
        found = await validate_client(rig.app, CLIENT, imported)
        assert [p.setting for p in found.problems] == ["vat_code.25"]
