"""Real worker processes: killed with SIGKILL mid-batch and restarted; two competing on PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from config_db.database import make_engine
from tests.e2e.cli import Cli, envelope, jsonl
from tests.servers import serve_sandbox

EVENTS_PER_CLIENT = 10


@pytest.fixture
def slow_sandbox(background_loop: asyncio.AbstractEventLoop) -> Iterator[str]:
    """The sandbox ERP answering after 40 ms, so that the workers are caught mid-batch."""
    with serve_sandbox(background_loop, token="sandbox-token", latency_ms=40) as sandbox:
        yield sandbox.base_url


def sandbox_stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/_sandbox/stats", timeout=10) as resp:  # noqa: S310 - our sandbox
        result: dict[str, Any] = json.load(resp)
        return result


def outcomes(db_url: str) -> dict[str, int]:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT action, COUNT(*) FROM sync_log GROUP BY action")).all()
    finally:
        engine.dispose()
    return {action: count for action, count in rows}


def workload(cli: Cli, sandbox_url: str, n_clients: int) -> list[str]:
    names = [f"client{i}" for i in range(n_clients)]
    cli.provision_directly(sandbox_url, *names)
    events = [envelope(n, client) for n in range(EVENTS_PER_CLIENT) for client in names]
    cli.run("send", "-", input=jsonl(events))
    return [f"customer/{client}-c{n}" for client in names for n in range(EVENTS_PER_CLIENT)]


def assert_each_written_once(sandbox_url: str, expected: list[str]) -> None:
    writes = sandbox_stats(sandbox_url)["writes"]
    assert sorted(writes) == sorted(expected), "every event applied"
    assert {k: v for k, v in writes.items() if v != 1} == {}, "none applied twice"


@pytest.mark.slow
def test_sigkill_mid_batch_then_restart(migrated_db_url: str, slow_sandbox: str) -> None:
    cli = Cli(migrated_db_url)
    expected = workload(cli, slow_sandbox, n_clients=12)
    env = {"CWI_LOCK_DURATION_S": "1", "CWI_CONCURRENCY": "8"}
    worker = cli.start("run", **env)
    deadline = time.monotonic() + 60
    while outcomes(migrated_db_url).get("created", 0) < 15:
        assert worker.poll() is None and time.monotonic() < deadline, "the worker should be busy"
        time.sleep(0.05)
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)
    done_before = outcomes(migrated_db_url).get("created", 0)
    assert 0 < done_before < len(expected), "killed mid-batch"

    cli.run("run", "--until-idle", check=True, **env)

    assert_each_written_once(slow_sandbox, expected)
    final = outcomes(migrated_db_url)
    assert final["created"] == len(expected)
    assert_client_order_kept(migrated_db_url)
    status = cli.status()
    assert (status["active"], status["locked"], status["dead_lettered"]) == (0, 0, 0)


@pytest.mark.slow
@pytest.mark.postgres
def test_two_workers_compete_without_double_processing(
    request: pytest.FixtureRequest, slow_sandbox: str
) -> None:
    from config_db.migrate import upgrade
    from config_db.models import metadata

    url = request.getfixturevalue("postgres_server")
    engine = make_engine(url)
    metadata.drop_all(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
    upgrade(engine)
    engine.dispose()
    cli = Cli(url)
    expected = workload(cli, slow_sandbox, n_clients=40)
    workers = [cli.start("run", "--until-idle", CWI_CONCURRENCY="8") for _ in range(2)]
    reports = [err for _, err in cli.communicate_all(workers, timeout=120)]
    assert all(w.returncode == 0 for w in workers), reports
    processed = [int(re.search(r"after (\d+) message", r).group(1)) for r in reports]  # type: ignore[union-attr]
    assert sum(processed) == len(expected), reports
    assert min(processed) > 0, f"both workers took part: {processed}"
    assert_each_written_once(slow_sandbox, expected)
    assert outcomes(url)["created"] == len(expected)
    assert_client_order_kept(url)


def assert_client_order_kept(db_url: str) -> None:
    """Each client's events were applied in the order they were sent (e0, e1, …)."""
    engine = make_engine(db_url)
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT client_id, message_id FROM sync_log WHERE action = 'created' ORDER BY id")
        )
        seen: dict[str, list[int]] = {}
        for client_id, message_id in rows:
            seen.setdefault(client_id, []).append(int(message_id.rsplit("-e", 1)[1]))
    engine.dispose()
    assert all(order == sorted(order) for order in seen.values()), seen


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_the_worker_cleanly(tmp_path: Any, slow_sandbox: str, sig: signal.Signals) -> None:
    from config_db.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'cwi.db'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    cli = Cli(url)
    workload(cli, slow_sandbox, n_clients=8)
    worker = cli.start("run", CWI_CONCURRENCY="8")
    deadline = time.monotonic() + 60
    while outcomes(url).get("created", 0) < 5:
        assert worker.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    worker.send_signal(sig)
    _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 0, stderr
    assert "worker stopped after" in stderr
    status = cli.status()
    assert status["locked"] == 0, "in-flight messages were finished, not left locked"
    assert status["active"] > 0, "it stopped receiving"
    assert status["active"] + outcomes(url)["created"] == 8 * EVENTS_PER_CLIENT
