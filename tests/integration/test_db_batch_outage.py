"""A group commit whose batch failed for one caller runs the others on their own; one of those that
meets the database gone then waits out the outage and runs again, as a whole batch that met it
would, instead of handing its caller the connection error (a settlement failed that way during a
database restart)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection

from config_db.database import make_engine
from worker.db import Database


def test_a_caller_whose_own_run_meets_the_database_gone_waits_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = Database(make_engine(f"sqlite:///{tmp_path / 'o.db'}", autocheckpoint=False), checkpoint_s=30)
    db.run_sync(lambda conn: conn.exec_driver_sql("CREATE TABLE t (x INTEGER)"))
    monkeypatch.setattr(db, "_run_inline", lambda batch: None)  # every batch on the writer thread
    runs: list[str] = []

    def patient(conn: Connection) -> str:
        # Its first run alone (after the batch failed) meets the database gone.
        alone = runs.count("bad") == 1 and "gone" not in runs
        runs.append("gone" if alone else "patient")
        if alone:
            raise ConnectionError("server closed the connection unexpectedly")
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        return "written"

    def bad(conn: Connection) -> Any:
        runs.append("bad")
        raise ValueError("this caller's own mistake")

    async def run() -> tuple[Any, Any]:
        return await asyncio.gather(db.batched(patient), db.batched(bad), return_exceptions=True)

    try:
        written, mistake = asyncio.run(run())
    finally:
        asyncio.run(db.close())
    assert written == "written"
    assert isinstance(mistake, ValueError)
    assert runs == ["patient", "bad", "gone", "bad", "patient"]
    assert db.run_sync(lambda conn: conn.exec_driver_sql("SELECT count(*) FROM t").scalar_one()) == 1
