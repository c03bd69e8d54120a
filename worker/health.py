"""What /healthz, /readyz and /metrics answer, whichever web server carries them: the listener's
Starlette app in `cwi serve` (``worker.ingress.health``) or the worker's own port in `cwi run`
(``worker.health_port``).

Both run each request ``impatient()`` (``worker.outage``): during a database outage /readyz says "not
ready" at once rather than wait it out.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import Connection, text

from worker.bootstrap import App
from worker.buses.base import BusStatsUnavailable

READY_TIMEOUT_S = 5.0
RETRY_LATER = {"Retry-After": "5"}
LIVE: dict[str, Any] = {"status": "ok"}


async def readiness(app: App) -> tuple[int, dict[str, Any]]:
    """200 and ``{"status": "ready"}`` when the database and the bus answer; else 503 naming what
    is down and why."""
    down = {}
    try:
        await asyncio.wait_for(app.db.run(_ping), READY_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready", said with why
        down["database"] = _why(exc)
    try:
        await asyncio.wait_for(app.bus.stats(), READY_TIMEOUT_S)
    except BusStatsUnavailable:
        pass  # the bus answered; these credentials may just not read its counts
    except Exception as exc:  # noqa: BLE001
        down["bus"] = _why(exc)
    if down:
        return 503, {"status": "unavailable", "down": down}
    return 200, {"status": "ready"}


def _ping(db: Connection) -> None:
    db.execute(text("SELECT 1"))


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {READY_TIMEOUT_S:g} s"
    return f"{exc.__class__.__name__}: {exc}".splitlines()[0][:300]
