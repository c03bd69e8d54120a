"""Issue 10, failure 4: delayed retries that start together on a fresh Service Bus sender all get
scheduled (the SDK fails concurrent first calls on its own: the test peer shows it), and a
settlement that fails never kills its task: the message is let go, comes back and is handled.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from azure.servicebus.exceptions import ServiceBusError

from config_db.database import make_engine
from config_db.models import metadata
from tests.dispatching import StaticConnections
from tests.integration.buses import LOCK_S, QUEUE, azure_bus
from tests.memory_sides import CLIENT, MemoryErp
from tests.servicebus_peer import ServiceBusPeer
from worker.buses.base import OutgoingMessage
from worker.buses.local import LocalBus
from worker.db import Database, Journal
from worker.messaging.dispatch import Dispatcher
from worker.messaging.retry import RetryPolicy
from worker.messaging.runner import Worker

CONCURRENT = 4


async def test_delayed_retries_started_together_on_a_fresh_sender_are_all_scheduled(
    peer: ServiceBusPeer,
) -> None:
    publisher = azure_bus(peer.connection_string, QUEUE, False, LOCK_S)
    bus = azure_bus(peer.connection_string, QUEUE, False, LOCK_S)  # its sender never used yet
    try:
        await publisher.publish(
            [OutgoingMessage(json.dumps({"n": n}).encode(), f"m{n}") for n in range(CONCURRENT)]
        )
        got: list[Any] = []
        async with asyncio.timeout(20):
            while len(got) < CONCURRENT:
                got += await bus.receive(CONCURRENT - len(got), 1.0)
        await asyncio.gather(*(bus.reschedule(d, 30.0, {"cwi-attempt": 1}) for d in got))
        assert peer.scheduled_count(QUEUE) == CONCURRENT
        assert peer.active_count(QUEUE) == 0, "every original completed"
    finally:
        await bus.close()
        await publisher.close()


class SettlementFails(LocalBus):
    """The local bus whose first reschedule fails as a remote bus's might."""

    failures = 0

    async def reschedule(
        self, delivery: Any, delay_s: float, properties: Mapping[str, Any], journal: Journal | None = None
    ) -> None:
        if not self.failures:
            self.failures += 1
            raise ServiceBusError("Handler failed: 'NoneType' object has no attribute 'client_ready_async'.")
        await super().reschedule(delivery, delay_s, properties, journal)


async def test_a_failed_settlement_lets_the_message_go_and_it_comes_back(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    unhandled: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: unhandled.append(context))
    db = Database(make_engine(f"sqlite:///{tmp_path / 'cwi.db'}"))
    metadata.create_all(db.engine)
    erp = MemoryErp()
    erp.faults.append("before")  # the first push fails: a delayed retry, whose settlement fails
    bus = SettlementFails(db, lock_duration_s=5)
    policy = RetryPolicy(delays=(0.05,), inprocess_attempts=1, base_wait_s=0.0)
    worker = Worker(bus, Dispatcher(db, StaticConnections(erp), policy), concurrency=2)
    body = {
        "id": "e1",
        "client_id": CLIENT,
        "type": "customer.created",
        "source": "frontend",
        "occurred_at": "2026-11-23T10:00:00Z",
        "data": {"id": "c1", "number": "1001", "name": "Acme AS"},
    }
    try:
        await bus.publish([OutgoingMessage(json.dumps(body).encode(), "t1", CLIENT)])
        stats = await asyncio.wait_for(worker.run(until_idle=True), 30)
        assert stats.counts == {"settle_failed": 1, "created": 1}
        assert erp.worker_writes() == 1
        assert (await bus.stats()).dead_lettered == 0
    finally:
        await db.close()
        loop.set_exception_handler(None)
    assert unhandled == [], "no task died with an exception nobody retrieved"
