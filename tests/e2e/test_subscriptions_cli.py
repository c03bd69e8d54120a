"""``cwi subscriptions`` as a user runs it: add (refusals in one line), list, rotate-secret, pause,
resume, deliveries, remove; and the worker process killed with SIGKILL in the middle of a delivery."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from config_db.database import make_engine
from config_db.migrate import upgrade
from tests.e2e.cli import Cli, envelope, jsonl
from tests.integration.publishing import arrival_order
from tests.integration.webhook_receiver import Receiver, always, threaded

OPEN = {"CWI_PUBLISHER_ALLOW_PRIVATE": "true", "CWI_PUBLISHER_ALLOW_HTTP": "true"}


def one_line_error(proc: Any, code: int = 1) -> str:
    assert proc.returncode == code and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return str(lines[0])


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A migrated SQLite database: what is checked here does not depend on the database (the
    services under these commands are tested on SQLite and PostgreSQL in tests/integration)."""
    url = f"sqlite:///{tmp_path / 'cwi.db'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


def test_subscriptions_commands(sqlite_url: str) -> None:
    cli = Cli(sqlite_url)
    cli.provision_directly("http://127.0.0.1:9", "acme")
    refused = cli.run(
        "subscriptions", "add", "acme", "https://127.0.0.1:9/hooks", "-e", "customer.*", check=False
    )
    assert "127.0.0.1 is a loopback address; set CWI_PUBLISHER_ALLOW_PRIVATE=true" in one_line_error(refused)
    broken = cli.run("subscriptions", "list", check=False, CWI_PUBLISHER_TIMEOUT_S="-1")
    assert "configuration error: CWI_PUBLISHER_TIMEOUT_S" in one_line_error(broken, 2)

    added = json.loads(
        cli.run(
            "subscriptions", "add", "acme", "http://127.0.0.1:9/hooks", "-e", "customer.*,invoice.created",
            "-f", "name", "--json", check=True, **OPEN,
        ).stdout
    )  # fmt: skip
    sub_id, secret = added["id"], added["secret"]
    assert secret.startswith("whsec_") and added["events"] == ["customer.*", "invoice.created"]
    listed = [json.loads(line) for line in cli.run("subscriptions", "list", "--json").stdout.splitlines()]
    assert [s["id"] for s in listed] == [sub_id] and secret not in str(listed)
    rotated = json.loads(cli.run("subscriptions", "rotate-secret", sub_id, "--grace", "1h", "--json").stdout)
    assert rotated["secret"] not in (secret, "") and rotated["previous_valid_until"]
    assert "paused (paused by" in cli.run("subscriptions", "pause", sub_id).stdout
    assert "active; 0 record(s)" in cli.run("subscriptions", "resume", sub_id).stdout
    assert "removed; 0 waiting deliveries dropped" in cli.run("subscriptions", "remove", sub_id).stdout


def deliveries(db_url: str) -> dict[str, int]:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT status, COUNT(*) FROM webhook_deliveries GROUP BY status")).all()
    finally:
        engine.dispose()
    return {status: n for status, n in rows}


@pytest.mark.slow
def test_sigkill_during_a_delivery_then_restart_loses_nothing(sqlite_url: str, sandbox_url: str) -> None:
    cli = Cli(sqlite_url)
    cli.provision_directly(sandbox_url, "acme")
    events = []
    for change in range(2):
        for record in range(4):
            e = envelope(10 * change + record, type="customer.created" if change == 0 else "customer.updated")
            e["data"]["id"], e["sequence"] = f"acme-r{record}", change
            events.append(e)
    with threaded(Receiver(behave=always("slow"), slow_s=0.2)) as receiver:
        added = json.loads(
            cli.run(
                "subscriptions", "add", "acme", receiver.url, "-e", "*", "--json", check=True, **OPEN
            ).stdout
        )
        receiver.secrets.append(added["secret"])
        cli.run("send", "-", input=jsonl(events))
        env = {
            **OPEN,
            "CWI_LOCK_DURATION_S": "1",
            "CWI_PUBLISHER_TIMEOUT_S": "5",
            "CWI_PUBLISHER_DIRECTORY_S": "0",
        }
        worker = cli.start("run", **env)
        deadline = time.monotonic() + 60
        while not (len(receiver.calls) >= 3 and receiver.in_flight > 0):
            assert worker.poll() is None and time.monotonic() < deadline, "the worker should be delivering"
            time.sleep(0.01)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        before = deliveries(sqlite_url).get("delivered", 0)
        assert before < len(events), "killed mid-way"

        cli.run("run", "--until-idle", check=True, **env)
        calls = list(receiver.calls)

    shown = cli.run("subscriptions", "deliveries", added["id"], "--json").stdout
    log = [json.loads(line) for line in shown.splitlines()]
    assert len(log) == len(events) and {d["status"] for d in log} == {"delivered"}
    assert all(d["last_status"] == 200 and d["latency_ms"] >= 150 for d in log)
    assert {c.event_id for c in calls} == {e["id"] for e in events}, "nothing lost"
    ids = [c.webhook_id for c in calls]
    assert len(ids) > len(set(ids)), "the call cut short by the kill was made again (same webhook-id)"
    assert all(order == sorted(order) for order in arrival_order(calls).values()), "order per record kept"
