"""What the bus-level and worker-level suites share: the peer's entities, the adapter as tests build
it, a clock for the local bus, and the "connected" namespace (a real one, or the emulator in Docker).

Connected mode: ``CWI_TEST_SERVICEBUS_CONNECTION_STRING`` names a namespace or emulator whose
queues ``CWI_TEST_SERVICEBUS_QUEUE`` (default ``cwi``) and ``CWI_TEST_SERVICEBUS_SESSION_QUEUE``
(default ``cwi-sessions``, requiring sessions) exist; ``CWI_TEST_SERVICEBUS_LOCK_S`` and
``CWI_TEST_SERVICEBUS_MAX_DELIVERY_COUNT`` describe them (default 60 and 10). Without it, where a
Docker engine answers, Microsoft's emulator is started with those queues; otherwise the connected
cases skip.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.integration.containers import LOCK_S as EMULATOR_LOCK_S
from tests.integration.containers import MAX_DELIVERY_COUNT as EMULATOR_MAX_DELIVERIES
from tests.integration.containers import docker_answers, servicebus_emulator
from tests.servicebus_peer import EntityOptions, ServiceBusPeer
from worker.buses.azure import AzureBus
from worker.settings import load_azure_settings

LOCK_S = 2.0  # short, so that lock expiry and renewal can be seen in real time
MAX_DELIVERIES = 3
QUEUE, SESSION_QUEUE = "cwi", "cwi-sessions"


class OffsetClock:
    """Real time plus an offset that a test can push forward (to expire the local bus's locks)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@dataclass(frozen=True)
class Namespace:
    """A connected namespace: where it is, its two queues, and how they are configured."""

    connection_string: str
    queue: str
    session_queue: str
    lock_s: float
    max_deliveries: int

    def entity(self, sessions: bool) -> str:
        return self.session_queue if sessions else self.queue


@pytest.fixture(scope="session")
def servicebus_namespace() -> Iterator[Namespace]:
    """The connected namespace, or a skip (also with CI=true: no Docker means no emulator here)."""
    queue = os.environ.get("CWI_TEST_SERVICEBUS_QUEUE", QUEUE)
    session_queue = os.environ.get("CWI_TEST_SERVICEBUS_SESSION_QUEUE", SESSION_QUEUE)
    given = os.environ.get("CWI_TEST_SERVICEBUS_CONNECTION_STRING")
    if given:
        lock_s = float(os.environ.get("CWI_TEST_SERVICEBUS_LOCK_S", "60"))
        max_deliveries = int(os.environ.get("CWI_TEST_SERVICEBUS_MAX_DELIVERY_COUNT", "10"))
        yield Namespace(given, queue, session_queue, lock_s, max_deliveries)
        return
    if not docker_answers():
        pytest.skip("CWI_TEST_SERVICEBUS_CONNECTION_STRING is not set and no Docker engine answers")
    with servicebus_emulator(queue, session_queue) as conn:
        yield Namespace(conn, queue, session_queue, EMULATOR_LOCK_S, EMULATOR_MAX_DELIVERIES)


def peer_entities(lock_s: float = LOCK_S) -> dict[str, EntityOptions]:
    return {
        QUEUE: EntityOptions(max_delivery_count=MAX_DELIVERIES, lock_duration_s=lock_s),
        SESSION_QUEUE: EntityOptions(
            max_delivery_count=MAX_DELIVERIES, lock_duration_s=lock_s, requires_session=True
        ),
    }


@pytest.fixture
def peer() -> Iterator[ServiceBusPeer]:
    """A fresh peer for each test (it starts in well under a second): no test sees another's messages."""
    with ServiceBusPeer(entities=peer_entities()) as running:
        yield running


def azure_bus(
    connection_string: str,
    queue: str,
    sessions: bool,
    lock_s: float,
    idle_probe_s: float = 3.0,
    poll_s: float = 0.5,
    receivers: int = 1,
    prefetch: int = 0,
) -> AzureBus:
    settings = load_azure_settings(
        servicebus_queue=queue,
        servicebus_connection_string=connection_string,
        servicebus_sessions=sessions,
        servicebus_session_idle_s=0.3,
        servicebus_receivers=receivers,
    )
    # Few, quick SDK retries: a lost lock must surface at once, not after the SDK's ~10 s of retrying.
    return AzureBus(
        settings,
        lock_duration_s=lock_s,
        retry_total=1,
        retry_backoff_s=0.1,
        poll_s=poll_s,
        accept_wait_s=3.0,
        idle_probe_s=idle_probe_s,
        prefetch=prefetch,
    )


async def drain(ns: Namespace, sessions: bool) -> None:
    """Complete whatever a test left behind on a connected namespace, and purge the dead letters."""
    bus = azure_bus(ns.connection_string, ns.entity(sessions), sessions, ns.lock_s)
    try:
        while got := await bus.receive(50, 1.0):
            await asyncio.gather(*(bus.complete(d) for d in got), return_exceptions=True)
        for letter in await bus.dead_letters(500):
            await bus.purge_dead_letter(letter.sequence_number)
    finally:
        await bus.close()
