"""A worker whose CWI_SECRET_KEY cannot read a connection's credentials: found at start, and never
a reason to dead-letter a message (the ERP refused nothing)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from config_db import clients
from config_db.database import make_engine
from config_db.secrets import SecretBox
from tests.integration.worker_rig import publish_one_customer
from worker.buses.local import LocalBus
from worker.db import Database
from worker.messaging.connections import ConnectionDirectory, unreadable_credentials
from worker.messaging.dispatch import KEY_PROBLEM_DELAY_S, Dispatcher
from worker.messaging.retry import ATTEMPT_PROPERTY, RetryPolicy
from worker.messaging.runner import Worker


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(make_engine(db_url))

    def provision(conn: Any) -> None:
        clients.add_client(conn, "acme", "acme")
        sealed = SecretBox("the key it was stored with").encrypt({"token": "t"})
        clients.set_connection(
            conn, clients.StoredConnection("acme", "generic_rest", "http://x", {}, sealed, True)
        )

    await database.run(provision)
    yield database
    await database.close()


async def test_a_key_that_cannot_read_a_connection_is_named_at_start(db: Database) -> None:
    stored = await db.run(clients.list_connections)
    [problem] = unreadable_credentials(stored, "another key")
    assert "client 'acme'" in problem and "CWI_SECRET_KEY" in problem
    assert unreadable_credentials(stored, "the key it was stored with") == []
    assert unreadable_credentials(stored, "another key,the key it was stored with") == [], "rotation"


async def test_a_message_whose_credentials_cannot_be_read_waits_instead_of_dead_lettering(
    db: Database,
) -> None:
    bus = LocalBus(db)
    await publish_one_customer(bus)
    async with aiohttp.ClientSession() as http:
        directory = ConnectionDirectory(db, http, "another key")
        worker = Worker(bus, Dispatcher(db, directory, RetryPolicy()), concurrency=1)
        stats = await worker.run(until_idle=True)
    assert stats.counts == {"retry": 1}
    bus_stats = await bus.stats()
    assert (bus_stats.dead_lettered, bus_stats.scheduled) == (0, 1), "it waits; nothing dead-lettered"
    row = await db.run(lambda c: c.exec_driver_sql("SELECT properties, visible_at FROM bus_messages").one())
    properties = row[0] if isinstance(row[0], dict) else json.loads(row[0])
    assert properties[ATTEMPT_PROPERTY] == 0, "no attempt used"
    assert KEY_PROBLEM_DELAY_S >= 30
