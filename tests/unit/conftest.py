"""Fixtures of the unit tests: the schema on an in-memory SQLite database, as the worker's ``Database``
(``db``) or as a bare engine for the journal's synchronous functions (``engine``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import Engine

from config_db.database import make_engine
from config_db.models import metadata
from worker.db import Database


@pytest.fixture
async def db() -> AsyncIterator[Database]:
    database = Database(make_engine("sqlite://"))
    metadata.create_all(database.engine)
    yield database
    await database.close()


@pytest.fixture
def engine() -> Engine:
    engine = make_engine("sqlite://")
    metadata.create_all(engine)
    return engine
