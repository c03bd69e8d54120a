"""``cwi demo`` as a user runs it: the inbound part applies ERP changes once and ignores every echo."""

from __future__ import annotations

import re

import pytest

from tests.e2e.cli import Cli


def _row(out: str, label: str) -> int:
    match = re.search(rf"{re.escape(label)}\s*│\s*(\d+)", out)
    assert match, f"no row {label!r} in:\n{out}"
    return int(match.group(1))


@pytest.mark.slow
def test_the_demo_shows_inbound_changes_applied_and_echoes_ignored() -> None:
    out = Cli("sqlite:///unused.db").run_process("demo", COLUMNS="160").stdout
    cw_changes = _row(out, "changes made by users in CW")
    erp_changes = _row(out, "changes made by users in the ERP")
    assert _row(out, "inbound changes applied to CW") == erp_changes > 0
    assert _row(out, "CW Write API calls (creates/updates/deletes)") == erp_changes
    assert _row(out, "ERP writes (creates/updates/deletes)") == cw_changes > 0
    assert _row(out, "echoes ignored: ERP webhooks of our pushes") == cw_changes
    assert _row(out, "echoes ignored: CW events of our inbound writes") == erp_changes
    assert _row(out, "webhooks fired by the sandbox ERP") == cw_changes + erp_changes
