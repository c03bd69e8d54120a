"""Scheduled reconciliation: when a job is due, the per-client lease in the database, and two
schedulers in two processes that never run one client's job twice at once."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import subprocess
import sys
import time
from pathlib import Path

from config_db import clients
from config_db import reconcile as state
from config_db.database import make_engine
from worker.bootstrap import open_app
from worker.reconcile.schedule import Job, Scheduler, due
from worker.settings import Settings

YEARLY = "0 0 1 1 *"
T0 = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC)


def test_a_job_is_due_when_its_schedule_fired_since_its_last_run() -> None:
    assert due("0 2 * * *", None, T0), "never run: at once"
    assert not due("0 2 * * *", T0, T0 + dt.timedelta(hours=15))
    assert due("0 2 * * *", T0, T0 + dt.timedelta(hours=16, minutes=1))
    assert not due("0 0 31 2 *", T0, T0 + dt.timedelta(days=400)), "never fires: never due (it raised)"


async def test_one_clients_failing_job_does_not_hold_up_the_others(migrated_db_url: str) -> None:
    """A job's unexpected error left the tick, so every client after it in the list never had its
    jobs run (a schedule stored unchecked that never fires did the same: ``due`` raised)."""
    _provision(migrated_db_url, "acme", "globex")
    ran: list[tuple[str, str]] = []

    async def run_job(job: Job) -> str:
        if job.client_id == "acme":
            raise RuntimeError("an ERP answer nobody expected")
        ran.append((job.client_id, job.name))
        return "ran"

    async with open_app(Settings(database_url=migrated_db_url)) as app:
        done = await Scheduler(app, run_job=run_job).tick()
    assert sorted(ran) == [("globex", "reconcile"), ("globex", "validate")]
    assert [(j.client_id, j.name) for j in done] == sorted(ran)


def test_the_lease_is_one_holders_until_released_or_run_out(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        with engine.begin() as db:
            assert state.acquire_run(db, "acme", "reconcile", "a", now_ms=1000, lease_ms=500)
            assert not state.acquire_run(db, "acme", "reconcile", "b", now_ms=1200, lease_ms=500)
            assert state.acquire_run(db, "acme", "validate", "b", now_ms=1200, lease_ms=500), "another job"
            assert state.acquire_run(db, "acme", "reconcile", "a", now_ms=1300, lease_ms=500), "extended"
            assert not state.acquire_run(db, "acme", "reconcile", "b", now_ms=1700, lease_ms=500)
            assert state.acquire_run(db, "acme", "reconcile", "b", now_ms=1801, lease_ms=500), "a ran out"
            state.release_run(db, "acme", "reconcile", "a", ran_at=T0, outcome="late")  # not a's any more
            assert state.last_run(db, "acme", "reconcile") is None
            state.release_run(db, "acme", "reconcile", "b", ran_at=T0, outcome="ok")
            assert state.last_run(db, "acme", "reconcile") == T0
            assert state.acquire_run(db, "acme", "reconcile", "c", now_ms=1900, lease_ms=500)
    finally:
        engine.dispose()


def _provision(db_url: str, *names: str) -> None:
    engine = make_engine(db_url)
    with engine.begin() as db:
        for name in names:
            clients.add_client(db, name, name)
            settings = {"reconcile_schedule": YEARLY, "validate_schedule": YEARLY}
            stored = clients.StoredConnection(name, "generic_rest", "http://127.0.0.1:9", settings, "", True)
            clients.set_connection(db, stored)
    engine.dispose()


def test_two_schedulers_in_two_processes_never_run_one_clients_job_twice_at_once(
    migrated_db_url: str, tmp_path: Path
) -> None:
    _provision(migrated_db_url, "acme", "globex")
    outs = [tmp_path / f"scheduler{n}.jsonl" for n in (1, 2)]
    script = Path(__file__).with_name("_scheduler_proc.py")
    procs = [
        subprocess.Popen([sys.executable, str(script), migrated_db_url, str(out)], cwd=Path.cwd())
        for out in outs
    ]
    try:
        deadline = time.monotonic() + 60
        while not all(out.with_suffix(".ready").exists() for out in outs):
            assert time.monotonic() < deadline, "the schedulers did not start"
            assert all(p.poll() is None for p in procs), "a scheduler died"
            time.sleep(0.02)
        for out in outs:
            out.with_suffix(".go").touch()
        for proc in procs:
            assert proc.wait(timeout=60) == 0
    finally:
        for proc in procs:
            proc.kill()
    runs = [json.loads(line) for out in outs if out.exists() for line in out.read_text().splitlines()]
    keys = sorted((r["client"], r["job"]) for r in runs)
    assert keys == sorted((c, j) for c in ("acme", "globex") for j in ("reconcile", "validate")), "each once"
    for pid in {r["pid"] for r in runs}:
        mine = sorted((r["start"], r["end"]) for r in runs if r["pid"] == pid)
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(mine)), "one job at a time per process"
