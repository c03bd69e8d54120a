"""``cwi synclog prune``: the CLI as a user runs it (durations, --dry-run, --json, bad values)."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.e2e.cli import Cli, envelope, jsonl


@pytest.fixture
def cli(migrated_db_url: str) -> Cli:
    return Cli(migrated_db_url)


def test_prune_deletes_old_finished_entries_and_keeps_the_dead_letters(
    cli: Cli, sandbox_url: str, tmp_path: Path
) -> None:
    cli.provision(sandbox_url, "acme")
    bad = envelope(9, data={"id": "acme-c9", "number": "9", "name": "Bad", "org_number": "123456789"})
    path = tmp_path / "events.jsonl"
    renamed = envelope(  # a later write of acme-c0: its first values are superseded
        3,
        type="customer.updated",
        occurred_at="2026-11-23T10:05:00Z",
        data={"id": "acme-c0", "number": "1000", "name": "C0"},
    )
    path.write_text(jsonl([*(envelope(n) for n in range(3)), bad]))
    cli.run("send", str(path))
    cli.run("run", "--until-idle")
    path.write_text(jsonl([renamed]))
    cli.run("send", str(path))
    cli.run("run", "--until-idle")
    before = cli.synclog()
    dead = [e for e in before if e["message_id"] == "acme-e9"]
    assert [e["action"] for e in dead] == ["pending", "failed"]
    time.sleep(1.1)  # every entry is now older than 1s

    dry = json.loads(cli.run("synclog", "prune", "--older-than", "1s", "--dry-run", "--json").stdout)
    assert dry["dry_run"] and dry["deleted"] == 0
    assert (dry["would_delete"], dry["kept"]) == (len(before) - 2, 2)
    assert dry["record_values"] == {"deleted": 0, "would_delete": 1, "kept": 3}
    assert len(cli.synclog()) == len(before)
    said = cli.run("synclog", "prune", "--older-than", "1s", "--dry-run").stdout
    assert (
        f"would delete {len(before) - 2} sync-log entries" in said and "would delete 1 record values" in said
    )

    done = json.loads(cli.run("synclog", "prune", "--older-than", "1s", "--json", "--batch", "2").stdout)
    assert (done["deleted"], done["kept"], done["older_than"]) == (len(before) - 2, 2, "1s")
    assert done["record_values"] == {"deleted": 1, "would_delete": None, "kept": 3}, "each record's newest"
    assert cli.synclog() == dead, "only the dead letter's entries are left: a replay reads them"
    assert "deleted 0 sync-log entries" in cli.run("synclog", "prune", "--older-than", "90d").stdout


@pytest.mark.parametrize("value", ["soon", "90", "0d", "-5m", "99999999d", "99999999999999999999w"])
def test_a_bad_age_is_one_line_and_exit_2(cli: Cli, value: str) -> None:
    result = cli.run("synclog", "prune", "--older-than", value, check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--older-than" in lines[0] and value in lines[0], result.stderr
    assert "90d" in lines[0] or "at most 36500d" in lines[0], result.stderr


def test_a_purge_of_dead_letters_older_than_a_slip_of_the_keyboard_is_one_line(cli: Cli) -> None:
    """``dlq purge`` and ``subscriptions rotate-secret`` read durations through the same parser."""
    cases = {
        ("dlq", "purge", "--older-than", "99999999d"): "older_than must be at most 36500d",
        ("subscriptions", "rotate-secret", "s1", "--grace", "1e9s"): "--grace must be a duration like 90d",
    }
    for args, said in cases.items():
        result = cli.run(*args, check=False)
        lines = result.stderr.strip().splitlines()
        assert result.returncode != 0 and len(lines) == 1, result.stderr
        assert said in lines[0] and args[-1] in lines[0], lines


def test_a_prune_interrupted_says_what_it_deleted_so_far(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C in a long prune used to end it without a word (exit 130): each batch is committed, so
    what went stays gone, and the operator is told how much and that running it again goes on."""
    from config_db import retention, sync_log
    from config_db.database import make_engine
    from config_db.sync_log import Entry

    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=200)
    engine = make_engine(cli.db_url)
    with engine.begin() as conn:
        for _ in range(50):
            sync_log.record(conn, Entry(direction="outbound", action="pending", message_id=None, at=old))
    step, calls = retention.prune_step, []

    def pressed_on_the_third(*args: object, **kwargs: object) -> retention.Step:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return step(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(retention, "prune_step", pressed_on_the_third)
    result = cli.run("synclog", "prune", "--older-than", "90d", "--batch", "10", check=False)
    assert result.returncode == 130 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        "interrupted after 2 batches: 20 entries deleted (each batch committed); "
        "run the command again to go on"
    )
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(sync_log.log)).scalar_one() == 30
    engine.dispose()
