"""Run the worker until both directions are quiet: no message due, no webhook still on its way.

For the demo and the tests, where the ERP's webhooks and CW's events are produced while the worker
runs: a quiet bus is not the end while a webhook sender still has calls queued.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence

from worker.bootstrap import App
from worker.messaging.outcomes import Outcome

Drain = Callable[[], Awaitable[None]]


async def run_until_quiet(
    app: App,
    drains: Sequence[Drain] = (),
    *,
    on_settled: Callable[[Outcome], None] | None = None,
    concurrency: int | None = None,
) -> Counter[str]:
    """Outcome counts of everything the worker settled until the bus and every drain are quiet."""
    counts: Counter[str] = Counter()
    while True:
        worker = app.worker(concurrency=concurrency)
        worker.on_settled = on_settled
        counts += (await worker.run(until_idle=True)).counts
        for drain in drains:
            await drain()
        stats = await app.bus.stats()
        if stats.active == 0 and stats.locked == 0:
            if stats.scheduled == 0:
                return counts
            await asyncio.sleep(0.1)  # delayed retries become visible shortly
