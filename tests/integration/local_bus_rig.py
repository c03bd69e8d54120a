"""What the local bus's test modules share (``test_local_bus*.py``): a clock the tests move, the bus
on each database (``db_url``: SQLite and PostgreSQL), and how they publish and receive."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from config_db.database import make_engine
from worker.buses.base import Delivery, OutgoingMessage
from worker.buses.local import LocalBus
from worker.db import Database

LOCK_S = 30
MAX_DELIVERIES = 3


class FakeClock:
    START = 1_700_000_000.0

    def __init__(self) -> None:
        self.now = self.START

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def in_(self, seconds: float) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.now + seconds, dt.UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(make_engine(db_url))
    yield database
    await database.close()


@pytest.fixture
def bus(db: Database, clock: FakeClock) -> LocalBus:
    return LocalBus(db, lock_duration_s=LOCK_S, max_delivery_count=MAX_DELIVERIES, clock=clock)


def message(message_id: str, session: str | None = None, **kwargs: Any) -> OutgoingMessage:
    body = kwargs.pop("body", json.dumps({"id": message_id}).encode())
    return OutgoingMessage(body=body, message_id=message_id, session_id=session, **kwargs)


async def receive_ids(bus: LocalBus, max_count: int = 10) -> list[str]:
    return [d.message_id for d in await bus.receive(max_count, 0)]


async def receive_one(bus: LocalBus) -> Delivery:
    [delivery] = await bus.receive(10, 0)
    return delivery
