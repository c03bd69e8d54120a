"""``cwi dlq`` as a subprocess: replay after the fix, confirmation, dry run, purge, status; a replay
SIGKILLed halfway and run again (local bus and Service Bus); two operators replaying at once."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from config_db import clients, sync_log
from config_db.database import make_engine
from config_db.secrets import SecretBox
from tests.e2e.cli import SECRET_KEY, TOKEN, Cli, envelope, jsonl
from tests.servicebus_peer import EntityOptions, ServiceBusPeer
from worker.buses.azure import AzureBus
from worker.buses.base import OutgoingMessage
from worker.buses.local import LocalBus
from worker.buses.local_sql import ACTIVE, BUS, DEADLETTERED
from worker.db import Database
from worker.settings import load_azure_settings

SQLITE_ONLY = pytest.mark.parametrize("migrated_db_url", ["sqlite"], indirect=True)


@pytest.fixture
def cli(migrated_db_url: str) -> Cli:
    return Cli(migrated_db_url)


def connect(cli: Cli, sandbox_url: str, client: str, token: str) -> None:
    engine = make_engine(cli.db_url)
    credentials = SecretBox(SECRET_KEY).encrypt({"token": token})
    with engine.begin() as conn:
        if client not in dict(clients.list_clients(conn)):
            clients.add_client(conn, client, client)
        clients.set_connection(
            conn, clients.StoredConnection(client, "generic_rest", sandbox_url, {}, credentials, True)
        )
    engine.dispose()


def journal(cli: Cli, action: str) -> list[dict[str, Any]]:
    engine = make_engine(cli.db_url)
    with engine.connect() as conn:
        rows = sync_log.entries(conn, limit=100_000)
    engine.dispose()
    return [r for r in rows if r["direction"] == "operator" and r["action"] == action]


def as_json(out: str) -> Any:
    return json.loads(out)


@SQLITE_ONLY
def test_replay_after_the_fix_confirm_dry_run_purge_and_status(
    cli: Cli, sandbox_url: str, tmp_path: Path
) -> None:
    connect(cli, sandbox_url, "acme", "expired-token")
    events = [envelope(n) for n in range(3)] + [envelope(9, client="later")]
    (tmp_path / "events.jsonl").write_text(jsonl(events))
    cli.run("send", str(tmp_path / "events.jsonl"))
    cli.run("run", "--until-idle")

    listed = as_json(cli.run("dlq", "list", "--json").stdout)
    assert listed["total"] == 4
    assert {(g["client_id"], g["reason"], g["count"]) for g in listed["summary"]} == {
        ("acme", "AuthenticationFailed", 3),
        ("later", "UnknownClient", 1),
    }
    first = next(m for m in listed["messages"] if m["envelope_id"] == "acme-e0")
    shown = as_json(cli.run("dlq", "show", first["id"], "--json").stdout)
    assert shown["envelope"]["id"] == "acme-e0" and [h["action"] for h in shown["history"]] == [
        "pending",
        "failed",
    ]

    connect(cli, sandbox_url, "acme", TOKEN)  # the operator fixes the credentials
    selection = ("dlq", "replay", "--all", "--reason", "AuthenticationFailed")
    dry = cli.run(*selection, "--dry-run").stdout
    assert "3 message(s) would be replayed; nothing was changed" in dry
    declined = cli.run(*selection, input="n\n", check=False)
    assert declined.returncode == 1 and "Replay 3 dead-lettered message(s)?" in declined.stderr
    assert cli.status()["dead_lettered"] == 4

    done = as_json(cli.run(*selection, "--yes", "--operator", "alice", "--json").stdout)
    assert done["summary"] == {"replayed": 3, "skipped": 0, "failed": 0}
    purged = as_json(cli.run("dlq", "purge", "--older-than", "0s", "--yes", "--json").stdout)
    assert purged["summary"] == {"purged": 1, "skipped": 0, "failed": 0}
    cli.run("run", "--until-idle")

    status = cli.status()
    assert status["dead_lettered"] == 0 and status["dead_letters_by_client"] == []
    [acme] = [row for row in status["last_outcomes"] if row["client_id"] == "acme"]
    assert acme["provider"] == "generic_rest" and acme["last_success"] > acme["last_failure"]
    created = [e for e in cli.synclog("--client", "acme") if e["action"] == "created"]
    assert sorted(e["cw_id"] for e in created) == ["acme-c0", "acme-c1", "acme-c2"]
    assert {json.loads(e["detail"])["operator"] for e in journal(cli, "replayed")} == {"alice"}
    assert [e["message_id"] for e in journal(cli, "purged")] == ["later-e9"]


# --- interrupted and concurrent replays -----------------------------------------------------------


async def _dead_letter(bus: LocalBus | AzureBus, count: int) -> None:
    envs = [envelope(n, client=f"c{n % 3}") for n in range(count)]
    await bus.publish([OutgoingMessage(json.dumps(e).encode(), f"t-{e['id']}", e["client_id"]) for e in envs])
    done = 0
    while done < count:
        for delivery in await bus.receive(10, 1.0):
            await bus.dead_letter(delivery, "AuthenticationFailed", "token expired")
            done += 1


async def _local_state(db_url: str, count: int) -> tuple[int, list[str]]:
    """(dead letters, envelope ids of the active copies), after dead-lettering ``count`` if asked."""
    db = Database(make_engine(db_url))
    try:
        if count:
            await _dead_letter(LocalBus(db), count)
        query = select(BUS.c.state, BUS.c.body)
        rows = await db.run(lambda conn: conn.execute(query).all())
        dead = sum(1 for r in rows if r.state == DEADLETTERED)
        return dead, [json.loads(r.body)["id"] for r in rows if r.state == ACTIVE]
    finally:
        await db.close()


@SQLITE_ONLY
def test_a_replay_sigkilled_halfway_then_rerun_replays_each_exactly_once(cli: Cli) -> None:
    asyncio.run(_local_state(cli.db_url, 4))
    killed = cli.run_process("dlq", "replay", "--all", "--yes", check=False, CWI_DLQ_HALT_AT="sent:2")
    assert killed.returncode == -signal.SIGKILL and "halted at sent 2" in killed.stderr
    dead, copies = asyncio.run(_local_state(cli.db_url, 0))
    assert (dead, len(copies)) == (3, 1), "the second resend's transaction never committed"

    rerun = as_json(cli.run("dlq", "replay", "--all", "--yes", "--json").stdout)

    assert rerun["summary"] == {"replayed": 3, "skipped": 0, "failed": 0}
    dead, copies = asyncio.run(_local_state(cli.db_url, 0))
    assert dead == 0 and sorted(copies) == sorted(f"c{n % 3}-e{n}" for n in range(4))
    assert len(journal(cli, "replayed")) == 4


@pytest.fixture
def peer() -> Iterator[ServiceBusPeer]:
    with ServiceBusPeer(
        entities={"cwi": EntityOptions(max_delivery_count=3, lock_duration_s=2.0)}
    ) as running:
        yield running


async def _on_peer(peer: ServiceBusPeer, count: int) -> None:
    settings = load_azure_settings(
        servicebus_queue="cwi", servicebus_connection_string=peer.connection_string
    )
    bus = AzureBus(settings, lock_duration_s=2.0, retry_total=1, retry_backoff_s=0.1, poll_s=0.5)
    try:
        await _dead_letter(bus, count)
    finally:
        await bus.close()


@SQLITE_ONLY
def test_a_replay_on_service_bus_sigkilled_after_the_resend_is_not_resent_again(
    cli: Cli, peer: ServiceBusPeer
) -> None:
    asyncio.run(_on_peer(peer, 4))
    azure = {
        "CWI_BUS": "azure",
        "CWI_SERVICEBUS_QUEUE": "cwi",
        "CWI_SERVICEBUS_CONNECTION_STRING": peer.connection_string,
    }
    killed = cli.run_process(
        "dlq", "replay", "--all", "--yes", check=False, CWI_DLQ_HALT_AT="sent:2", **azure
    )
    assert killed.returncode == -signal.SIGKILL
    # Between the copy's acknowledgement and the dead letter's removal: both exist for a moment.
    assert (peer.dead_letter_count("cwi"), peer.active_count("cwi")) == (3, 2)

    rerun = as_json(cli.run("dlq", "replay", "--all", "--yes", "--json", check=True, **azure).stdout)

    assert rerun["summary"] == {"replayed": 3, "skipped": 0, "failed": 0}
    assert peer.dead_letter_count("cwi") == 0
    copies = [json.loads(bytes(m.body))["id"] for m in peer.messages("cwi")]
    assert sorted(copies) == sorted(f"c{n % 3}-e{n}" for n in range(4))
    assert len(journal(cli, "replayed")) == 4


def test_two_operators_replaying_at_once_resend_each_once(cli: Cli) -> None:
    asyncio.run(_local_state(cli.db_url, 12))
    operators = [
        cli.start("dlq", "replay", "--all", "--yes", "--json", "--operator", name) for name in ("ann", "ben")
    ]
    results = [as_json(out) for out, _ in cli.communicate_all(operators, timeout=120)]

    assert sum(r["summary"]["replayed"] for r in results) == 12
    assert all(r["summary"]["failed"] == 0 for r in results)
    dead, copies = asyncio.run(_local_state(cli.db_url, 0))
    assert dead == 0 and sorted(copies) == sorted(f"c{n % 3}-e{n}" for n in range(12))
    assert len(journal(cli, "replayed")) == 12


@SQLITE_ONLY
def test_status_on_service_bus_without_counts_says_why_and_shows_the_rest(
    cli: Cli, peer: ServiceBusPeer
) -> None:
    asyncio.run(_on_peer(peer, 2))
    azure = {
        "CWI_BUS": "azure",
        "CWI_SERVICEBUS_QUEUE": "cwi",
        "CWI_SERVICEBUS_CONNECTION_STRING": peer.connection_string,
    }
    data = json.loads(cli.run("status", "--json", check=True, **azure).stdout)
    assert "management endpoint cannot be reached" in data["counts_unavailable"], "says which, not 'rights'"
    assert sum(g["count"] for g in data["dead_letters_by_client"]) == 2, "dead letters still shown"
    shown = cli.run("status", check=True, **azure)
    assert "bus counts unavailable" in shown.stderr and "dead letters" in shown.stdout
