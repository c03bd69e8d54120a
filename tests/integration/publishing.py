"""What the publisher's suites share: fast settings, a subscription to a receiver, the worker with the
publisher around the dispatcher, and waiting until every delivery has finished."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import text

from tests.integration.webhook_receiver import Call, Receiver
from tests.integration.worker_rig import KEY, Rig
from worker.messaging.runner import Worker
from worker.operators.actors import Actor
from worker.operators.subscriptions import Issued, Subscriptions
from worker.publisher import PublisherSettings, Sender, publishing
from worker.settings import Settings

ADMIN = Actor("tester", "admin", via="cli")
FAST = PublisherSettings(
    timeout_s=0.5,
    retry_first_s=0.05,
    retry_max_s=0.2,
    retry_for_s=60,
    pause_after_failures=1000,
    pause_after_s=0,
    allow_private=True,
    allow_http=True,
    directory_s=0,
)


def service(rig: Rig, settings: PublisherSettings = FAST) -> Subscriptions:
    return Subscriptions(rig.db, rig.bus, Settings(secret_key=KEY), settings)


async def subscribe(
    rig: Rig, receiver: Receiver, events: tuple[str, ...] = ("customer.*",), **kw: Any
) -> Issued:
    issued = await service(rig).add(ADMIN, "acme", receiver.url, events, **kw)
    receiver.secrets.append(issued.secret)
    return issued


def worker(rig: Rig, sender: Sender, *, concurrency: int = 8) -> Worker:
    handler = publishing(
        rig.pipeline(), rig.bus, sender, secret_key=KEY, lease_s=10, settings=sender.settings
    )
    return Worker(rig.bus, handler, concurrency=concurrency, shutdown_grace_s=5)


def statuses(rig: Rig) -> dict[str, int]:
    query = text("SELECT status, COUNT(*) FROM webhook_deliveries GROUP BY status")
    return {status: n for status, n in rig.db.run_sync(lambda c: c.execute(query).all())}


async def run_until(w: Worker, done: Callable[[], bool | Awaitable[bool]], timeout_s: float = 30.0) -> None:
    """Run the worker until ``done()`` holds (checked every 50 ms), then stop it."""
    task = asyncio.create_task(w.run())
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                found = done()
                if not isinstance(found, bool):
                    found = await found
                if found:
                    break
                assert not task.done(), "the worker stopped by itself"
                await asyncio.sleep(0.05)
    finally:
        w.stop()
        await asyncio.wait_for(task, 15)


def arrival_order(calls: list[Call]) -> dict[str, list[int]]:
    """Per record, the ``sequence`` of each call in the order the receiver got them."""
    seen: dict[str, list[int]] = {}
    for call in calls:
        seen.setdefault(call.record, []).append(int(call.body["sequence"]))
    return seen
