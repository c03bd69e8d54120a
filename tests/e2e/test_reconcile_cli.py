"""``cwi reconcile`` as a user runs it: the sandbox ERP in its own process, the fake CW in a thread."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from config_db.database import make_engine
from config_db.migrate import upgrade
from contracts import Entity
from tests.e2e.cli import Cli
from tests.fakes.serve import in_thread
from tests.integration.reconcile_rig import customer
from worker.dev.cw_sandbox import CWServer

CW_KEY = "cw-e2e-key"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """One database kind is enough here: the integration tests run reconciliation on both."""
    url = f"sqlite:///{tmp_path / 'cwi.db'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


def test_reconcile_reports_repairs_and_then_finds_nothing(sqlite_url: str, sandbox_url: str) -> None:
    cli = Cli(sqlite_url)
    cli.provision_directly(sandbox_url, "acme")
    with in_thread(lambda: CWServer(api_key=CW_KEY), "fake-cw") as cw:
        cw.cw.seed("acme", Entity.customer, customer(1).model_dump(mode="json"))
        env = {
            "CWI_CW_GRAPHQL_URL": cw.graphql_url,
            "CWI_CW_WRITE_URL": cw.write_url,
            "CWI_CW_API_KEY": CW_KEY,
        }

        drift = cli.run("reconcile", "acme", "--json", check=False, **env)
        assert drift.returncode == 1, drift.stderr
        report = json.loads(drift.stdout)
        [customers] = [e for e in report["entities"] if e["entity"] == "customer"]
        assert [(f["kind"], f["cw_id"]) for f in customers["findings"]] == [("missing_in_erp", "c-1")]

        repaired = json.loads(cli.run("reconcile", "acme", "--repair", "--json", check=True, **env).stdout)
        assert repaired["published"] == 1
        cli.run("run", "--until-idle", check=True, **env)
        assert cw.cw.stats.listings >= 8, "CW read twice, each entity paged"
        # (that a second run then finds nothing is tests/integration/test_reconcile.py's to show)

    no_cw = cli.run("reconcile", "acme", check=False)
    assert no_cw.returncode == 1 and "CWI_CW_GRAPHQL_URL" in no_cw.stderr
    assert "Traceback" not in no_cw.stderr
    bad = cli.run("reconcile", "acme", "--since", "last tuesday", check=False)
    assert bad.returncode == 2 and "--since" in bad.stderr
