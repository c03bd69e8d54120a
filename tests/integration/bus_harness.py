"""The harness of the behavioural bus suite (``test_bus_behaviour*.py``, and ``test_tracing.py``):
one ``Harness`` per bus (the local bus; Azure Service Bus through the real SDK, on the AMQP test peer
or a connected namespace), the ``bus`` and ``ordered_bus`` fixtures, and what the tests do with it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from config_db.database import make_engine
from config_db.models import metadata
from tests.integration.buses import (
    LOCK_S,
    MAX_DELIVERIES,
    QUEUE,
    SESSION_QUEUE,
    Namespace,
    OffsetClock,
    azure_bus,
    drain,
)
from tests.servicebus_peer import ServiceBusPeer
from worker.buses.azure import AzureBus
from worker.buses.base import Delivery, OutgoingMessage
from worker.buses.local import LocalBus
from worker.db import Database


@dataclass
class Harness:
    name: str
    bus: LocalBus | AzureBus
    orders_sessions: bool  # one message per session in flight, in order
    lock_s: float
    max_deliveries: int
    peer: ServiceBusPeer | None = None
    entity: str = QUEUE
    clock: OffsetClock | None = None

    @property
    def can_expire_locks(self) -> bool:
        return self.clock is not None or self.peer is not None

    async def elapse(self, seconds: float) -> None:
        """Let ``seconds`` pass: on the local bus's clock at once, on Service Bus in real time."""
        if self.clock is not None:
            self.clock.offset += seconds
        else:
            await asyncio.sleep(seconds)

    def expire_locks(self) -> None:
        if self.clock is not None:
            self.clock.offset += self.lock_s + 1
        elif self.peer is not None:
            self.peer.expire_lock(self.entity)


# --- fixtures -----------------------------------------------------------------------------------


async def _local(tmp_path: Path) -> AsyncIterator[Harness]:
    engine = make_engine(f"sqlite:///{tmp_path / 'bus.db'}")
    metadata.create_all(engine)
    db = Database(engine)
    clock = OffsetClock()
    bus = LocalBus(db, queue=QUEUE, lock_duration_s=LOCK_S, max_delivery_count=MAX_DELIVERIES, clock=clock)
    yield Harness(
        "local", bus, orders_sessions=True, lock_s=LOCK_S, max_deliveries=MAX_DELIVERIES, clock=clock
    )
    await bus.close()
    await db.close()


async def _on_peer(peer: ServiceBusPeer, sessions: bool) -> AsyncIterator[Harness]:
    entity = SESSION_QUEUE if sessions else QUEUE
    bus = azure_bus(peer.connection_string, entity, sessions, LOCK_S)
    await bus.open()
    await bus.receive(1, 0)  # with sessions, starts accepting one in the background
    name = "azure-sessions" if sessions else "azure"
    yield Harness(name, bus, sessions, LOCK_S, MAX_DELIVERIES, peer=peer, entity=entity)
    await bus.close()


async def _connected(ns: Namespace, sessions: bool) -> AsyncIterator[Harness]:
    entity = ns.entity(sessions)
    await drain(ns, sessions)
    bus = azure_bus(ns.connection_string, entity, sessions, ns.lock_s)
    await bus.open()
    name = f"{'azure-sessions' if sessions else 'azure'}-connected"
    yield Harness(name, bus, sessions, ns.lock_s, ns.max_deliveries, entity=entity)
    await bus.close()
    await drain(ns, sessions)


BUSES = [
    "local",
    "azure",
    "azure-sessions",
    pytest.param("azure-connected", marks=pytest.mark.connected),
    pytest.param("azure-sessions-connected", marks=pytest.mark.connected),
]


# What does not depend on sessions (publishing, the management endpoint) runs once per namespace kind.
SESSIONLESS = ["local", "azure", pytest.param("azure-connected", marks=pytest.mark.connected)]


@pytest.fixture(params=BUSES)
async def bus(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    kind = request.param
    if kind == "local":
        harnesses = _local(tmp_path)
    elif kind.endswith("-connected"):
        harnesses = _connected(
            request.getfixturevalue("servicebus_namespace"), kind.startswith("azure-sessions")
        )
    else:
        harnesses = _on_peer(request.getfixturevalue("peer"), kind == "azure-sessions")
    async for harness in harnesses:
        yield harness


@pytest.fixture(
    params=["local", "azure-sessions", pytest.param("azure-sessions-connected", marks=pytest.mark.connected)]
)
async def ordered_bus(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    """Buses that order by session id: the local bus always, Service Bus on a session entity."""
    kind = request.param
    if kind == "local":
        harnesses = _local(tmp_path)
    elif kind.endswith("-connected"):
        harnesses = _connected(request.getfixturevalue("servicebus_namespace"), True)
    else:
        harnesses = _on_peer(request.getfixturevalue("peer"), True)
    async for harness in harnesses:
        yield harness


# --- helpers ------------------------------------------------------------------------------------


def message(message_id: str, session: str, **properties: Any) -> OutgoingMessage:
    body = json.dumps({"id": message_id}).encode()
    return OutgoingMessage(body=body, message_id=message_id, session_id=session, properties=properties)


async def receive_n(h: Harness, n: int, timeout_s: float = 15.0) -> list[Delivery]:
    """Exactly ``n`` deliveries (no more are asked for), or fail after ``timeout_s``."""
    got: list[Delivery] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < n:
        assert time.monotonic() < deadline, f"received {len(got)} of {n}: {[d.message_id for d in got]}"
        got += await h.bus.receive(n - len(got), 0.5)
    return got


async def nothing_left(h: Harness) -> bool:
    """No message is active (deliverable or locked); scheduled ones do not count."""
    if h.peer is not None:
        return h.peer.active_count(h.entity) == 0
    return not await h.bus.receive(10, 0 if isinstance(h.bus, LocalBus) else 2.0)


def require_peer(h: Harness) -> ServiceBusPeer:
    if h.peer is None:
        pytest.skip("needs the Service Bus test peer")
    return h.peer


def require_lock_control(h: Harness) -> None:
    if not h.can_expire_locks:
        pytest.skip("cannot expire locks on a real namespace")
