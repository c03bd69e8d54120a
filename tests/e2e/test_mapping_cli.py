"""``cwi connections export`` and ``import`` as a user runs them: one client's mapping to another's."""

from __future__ import annotations

import json
from pathlib import Path

from config_db import clients
from config_db.database import make_engine
from config_db.migrate import upgrade
from config_db.secrets import SecretBox
from tests.e2e.cli import SECRET_KEY, Cli


def test_a_mapping_is_exported_and_imported_after_showing_its_changes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cwi.db'}"
    engine = make_engine(url)
    upgrade(engine)
    credentials = SecretBox(SECRET_KEY).encrypt({"consumer_token": "ct-secret-1", "employee_token": "et-2"})
    with engine.begin() as db:
        for name, settings in (
            ("acme", {"vat_code.25": "3", "project_manager_id": "11", "send_invoices": "true"}),
            ("globex", {"project_manager_id": "42", "vat_code.25": "5"}),
        ):
            clients.add_client(db, name, name)
            stored = clients.StoredConnection(
                name, "tripletex", "http://127.0.0.1:9/v2", settings, credentials, True
            )
            clients.set_connection(db, stored)
    cli = Cli(url)

    exported = cli.run("connections", "export", "acme").stdout
    assert "ct-secret-1" not in exported and "project_manager_id" in json.loads(exported)["left_out"]
    file = tmp_path / "mapping.json"
    file.write_text(exported)

    dry = cli.run("connections", "import", "globex", str(file), "--dry-run")
    assert "+ send_invoices=true" in dry.stdout and "~ vat_code.25: 5 → 3" in dry.stdout
    assert "warning" in dry.stderr, "checked against the target ERP (unreachable here: said so)"
    applied = cli.run("connections", "import", "globex", str(file))
    assert "2 change(s) applied" in applied.stdout
    with engine.begin() as db:
        after = clients.get_connection(db, "globex")
    engine.dispose()
    assert after is not None
    assert after.settings == {"project_manager_id": "42", "send_invoices": "true", "vat_code.25": "3"}
