"""What a worker holds: a provider kind's package and a database dialect only when it needs them,
no parsed value kept after its message."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from providers import registry
from providers.errors import PermanentError


def test_each_kind_is_the_package_of_its_name() -> None:
    assert [registry.kind(name).name for name in registry.KINDS] == list(registry.KINDS)
    assert dict(registry.PROVIDERS) == {name: registry.kind(name).factory for name in registry.KINDS}
    assert set(registry.WEBHOOK_PARSERS) == set(registry.WEBHOOK_SECRETS) == set(registry.KINDS)


def test_an_unknown_kind_is_named_with_the_known_ones() -> None:
    with pytest.raises(PermanentError, match=r"'sap' is not available \(known: generic_rest, tripletex"):
        registry.kind("sap")
    assert registry.BY_NAME.get("sap") is None
    assert "sap" not in registry.PROVIDERS
    with pytest.raises(KeyError):
        registry.WEBHOOK_PARSERS["sap"]


def _run(code: str) -> str:
    """What ``code`` prints, run in a fresh interpreter (what is loaded, and caches, are per process)."""
    command = [sys.executable, "-c", textwrap.dedent(code)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_a_worker_whose_clients_use_one_kind_loads_only_that_kind() -> None:
    out = _run("""
        import sys
        from providers import registry
        loaded = lambda: sorted(k for k in registry.KINDS if f"providers.{k}" in sys.modules)
        before = loaded()
        registry.kind("generic_rest")
        print(before, loaded(), "cryptography.x509" in sys.modules)
    """)
    assert out == "[] ['generic_rest'] False"


def test_a_worker_on_sqlite_loads_no_other_database_dialect() -> None:
    out = _run("""
        import sys, sqlalchemy
        import config_db.models, worker.bootstrap, worker.messaging.runner
        from config_db import prepared, sync_log
        engine = sqlalchemy.create_engine("sqlite://")
        config_db.models.metadata.create_all(engine)
        prepared.insert_if_absent(sync_log.log, ("id",), "sqlite")
        dialects = {n.split(".")[2] for n in sys.modules if n.startswith("sqlalchemy.dialects.")}
        print(sorted(dialects - {"_typing"}))
    """)
    assert out == "['sqlite']"


def test_parsing_messages_keeps_none_of_their_values() -> None:
    """pydantic's JSON parser caches strings process-wide (16,384 of them, about 1 MB, by default
    values too); contracts cache keys only."""
    out = _run("""
        import json, random, tracemalloc
        from contracts.envelope import parse_envelope
        from contracts.records import Customer
        from worker.dev import fixtures as fx
        rng = random.Random(1)
        envs = [
            fx.envelope(f"c{i}", "customer.created", fx.customer(f"c{i}", i, rng), seq=i)
            for i in range(20000)
        ]
        bodies = [json.dumps(e).encode() for e in envs]
        records = [json.dumps(e["data"]) for e in envs]
        tracemalloc.start()
        for body, record in zip(bodies, records):
            parse_envelope(body)
            Customer.model_validate_json(record)
        print(tracemalloc.get_traced_memory()[0])
    """)
    assert int(out) < 100_000


def test_croniter_and_the_web_servers_load_only_where_they_are_used(tmp_path: Path) -> None:
    out = _run(f"""
        import asyncio, datetime as dt, sys
        import providers.settings, worker.observing, worker.reconcile.schedule, worker.sockets
        from worker.bootstrap import open_app
        from worker.settings import load_settings

        async def main():
            settings = load_settings(database_url="sqlite:///{tmp_path / "cwi.db"}", env_file="")
            async with open_app(settings, http=True) as app:
                async with worker.observing.serving_metrics(app, app.worker(), None):
                    pass
                served = "aiohttp.web" in sys.modules
                sock = worker.sockets.listen("127.0.0.1", 0)
                async with worker.observing.serving_metrics(app, app.worker(), sock):
                    pass
                print(served, "aiohttp.web" in sys.modules)

        asyncio.run(main())
        print("croniter" in sys.modules, "uvicorn" in sys.modules, "starlette" in sys.modules)
        worker.reconcile.schedule.due("0 2 * * *", dt.datetime(2026, 1, 1), dt.datetime(2026, 1, 2))
        print("croniter" in sys.modules)
    """)
    # The worker's own port is aiohttp's web server (aiohttp is loaded for the ERPs anyway), loaded
    # when the port is on; never uvicorn and Starlette, the listener's.
    assert out.splitlines()[-3:] == ["False True", "False False False", "True"]


def test_the_run_command_loads_neither_rich_nor_the_reconciler() -> None:
    """``cwi run`` prints nothing through rich and reconciles only when a client schedules it: both
    stay out of its memory until a command or a job needs them."""
    out = _run("""
        import sys
        import worker.cli.main, worker.cli.messages, worker.observing, worker.reconcile.schedule
        from worker.cli import common
        loaded = lambda: ("rich" in sys.modules, "worker.reconcile.service" in sys.modules)
        before = loaded()
        common.err_console.width
        print(before, loaded()[0])
    """)
    assert out == "(False, False) True"


def test_a_worker_loads_no_orm_no_rich_and_no_web_framework(tmp_path: Path) -> None:
    """The tables are Core tables: ``cwi run`` never loads SQLAlchemy's ORM (5.6 MB), nor rich,
    uvicorn or Starlette (the listener's)."""
    env = f"sqlite:///{tmp_path / 'cwi.db'}"
    _run(f"""
        import os
        os.environ["CWI_DATABASE_URL"] = {env!r}
        from worker.cli.main import main
        try:
            main(["db", "upgrade"])
        except SystemExit as exit:
            assert not exit.code, exit.code
    """)
    out = _run(f"""
        import contextlib, io, os, sys
        os.environ["CWI_DATABASE_URL"] = {env!r}
        os.environ["CWI_LOG_LEVEL"] = "WARNING"
        from worker.cli.main import main
        with contextlib.redirect_stderr(io.StringIO()):
            try:
                main(["run", "--until-idle"])
            except SystemExit as exit:
                assert not exit.code, exit.code
        heavy = ("sqlalchemy.orm", "rich", "uvicorn", "starlette", "alembic")
        loaded = sorted({{m for m in sys.modules if m.startswith(heavy)}})
        print(loaded, "worker.messaging.runner" in sys.modules)
    """)
    assert out.splitlines()[-1] == "[] True"
