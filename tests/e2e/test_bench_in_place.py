"""``cwi bench --in-place``: the benchmark on a database as it is (bench/synclog.py's ten million
rows), run after run, without touching what was there."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from config_db.database import make_engine
from config_db.models import clients, sync_log
from tests.e2e.cli import Cli


@pytest.mark.slow
def test_in_place_runs_on_the_named_database_and_keeps_it(migrated_db_url: str) -> None:
    cli = Cli(migrated_db_url)
    cli.run("clients", "add", "acme", "--name", "Acme")
    args = ("bench", "--events", "24", "--concurrency", "4", "--database-url", migrated_db_url, "--in-place")
    for _ in range(2):  # a second run meets the first one's clients and messages: none collide
        result = json.loads(cli.run(*args).stdout.strip().splitlines()[-1])
        assert (result["events"], result["concurrency"]) == (24, 4)
    engine = make_engine(migrated_db_url)
    try:
        with engine.connect() as conn:
            names = set(conn.execute(select(clients.c.id)).scalars())
            outcomes = conn.execute(
                select(func.count()).select_from(sync_log).where(sync_log.c.action == "created")
            ).scalar()
    finally:
        engine.dispose()
    assert "acme" in names
    assert len({name.rsplit("-", 1)[0] for name in names if name.startswith("bench-")}) == 2
    assert outcomes == 48


def test_in_place_without_a_database_is_one_line(sqlite_url: str) -> None:
    proc = Cli(sqlite_url).run("bench", "--events", "5", "--in-place", check=False)
    assert proc.returncode == 2
    assert "--in-place runs on the database --database-url names" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_bad_setting_is_one_line_naming_it(sqlite_url: str) -> None:
    proc = Cli(sqlite_url).run("bench", "--events", "5", check=False, CWI_PREFETCH="many")
    assert proc.returncode != 0
    assert "CWI_PREFETCH" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
