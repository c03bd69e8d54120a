"""Fixtures of the unit tests: the sync log on an in-memory SQLite database."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from config_db.database import make_engine
from config_db.models import Base
from worker.db import Database


@pytest.fixture
async def db() -> AsyncIterator[Database]:
    database = Database(make_engine("sqlite://"))
    Base.metadata.create_all(database.engine)
    yield database
    await database.close()
