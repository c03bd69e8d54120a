"""Shared fixtures: databases on SQLite and PostgreSQL, the skip-locally/fail-in-CI rule."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from sqlalchemy import Engine, create_engine, text

from config_db.database import make_engine
from tests.databases import empty_postgres, sqlite_copy, sqlite_template, unmigrated
from tests.servers import running_loop, serve_sandbox

IN_CI = os.environ.get("CI", "").lower() == "true"
# No .env file of the developer's (worker/settings.py reads one from the working directory) reaches
# the tests or the processes they start; a test that is about .env sets CWI_ENV_FILE itself.
os.environ["CWI_ENV_FILE"] = ""
PG_ADMIN_URL = os.environ.get(
    "CWI_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def require_service(available: bool, what: str) -> None:
    """Skip on a machine without ``what``; fail when CI=true, so a missing service is never green."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{what} is not available, and CI=true requires it")
    pytest.skip(f"{what} is not available")


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session; yields its URL."""
    require_service(_port_open("127.0.0.1", 5432), "PostgreSQL on 127.0.0.1:5432")
    name = f"cwi_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The session's two SQLite templates: the schema (``create_all``), and as Alembic migrates it."""
    directory = tmp_path_factory.mktemp("templates")
    return {
        "schema": sqlite_template(directory / "schema.db", migrated=False),
        "migrated": sqlite_template(directory / "migrated.db", migrated=True),
    }


def _database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, kind: str) -> str:
    if request.param == "sqlite":
        templates: dict[str, Path] = request.getfixturevalue("sqlite_templates")
        return sqlite_copy(templates[kind], tmp_path_factory.mktemp("db"))
    return empty_postgres(request.getfixturevalue("postgres_server"))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database URL with an empty, current schema: SQLite file or PostgreSQL."""
    return _database(request, tmp_path_factory, "schema")


@pytest.fixture
def sqlite_url(sqlite_templates: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> str:
    """An SQLite file with an empty, current schema (for what does not depend on the database)."""
    return sqlite_copy(sqlite_templates["schema"], tmp_path_factory.mktemp("db"))


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def unmigrated_engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    """An engine on a database with no schema and no Alembic version: a migration test's start (the
    session's PostgreSQL database is rebuilt for the next test, ``tests.databases.empty_postgres``)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('unmigrated') / 'u.db'}"
    else:
        url = request.getfixturevalue("postgres_server")
    engine = unmigrated(url)
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def migrated_db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database URL migrated with Alembic (as ``cwi db upgrade`` leaves it), for CLI tests."""
    return _database(request, tmp_path_factory, "migrated")


@pytest.fixture(autouse=True)
def _structlog_defaults() -> Iterator[None]:
    """Each test starts with structlog unconfigured: a command run in-process configured it to write
    to a stream that is closed by now."""
    yield
    structlog.reset_defaults()


@pytest.fixture(scope="session")
def background_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One event loop in a daemon thread for the session: the servers the tests call from the main thread."""
    with running_loop() as loop:
        yield loop


@pytest.fixture
def sandbox_url(background_loop: asyncio.AbstractEventLoop) -> Iterator[str]:
    """A fresh sandbox ERP in this process (on the session's server loop), token ``sandbox-token``."""
    with serve_sandbox(background_loop, token="sandbox-token") as sandbox:
        yield sandbox.base_url
