"""/healthz, /readyz and /metrics: beside the webhooks in `cwi serve`, and on a port of their own in
`cwi run` (``metrics_app``, served by ``worker.observing``).

Requests never wait out a database outage (``worker.outage``): they fail at once, so /readyz says
"not ready" during one, and other calls answer 503 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import Connection, text
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from worker.bootstrap import App
from worker.buses.base import BusStatsUnavailable
from worker.metrics import Metrics
from worker.outage import DatabaseUnavailable, impatient

READY_TIMEOUT_S = 5.0
RETRY_LATER = {"Retry-After": "5"}


class FailFast:
    """Requests never wait out a database outage: they fail at once, and the answer is a 503 with
    ``Retry-After`` (an ERP retries its webhook; an operator tries again)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with impatient():
            await self.app(scope, receive, send)


async def database_down(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": "unavailable", "message": str(exc)}, status_code=503, headers=RETRY_LATER)


@dataclass
class Health:
    app: App
    metrics: Metrics

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        down = {}
        try:
            await asyncio.wait_for(self.app.db.run(_ping), READY_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready", said with why
            down["database"] = _why(exc)
        try:
            await asyncio.wait_for(self.app.bus.stats(), READY_TIMEOUT_S)
        except BusStatsUnavailable:
            pass  # the bus answered; these credentials may just not read its counts
        except Exception as exc:  # noqa: BLE001
            down["bus"] = _why(exc)
        if down:
            return JSONResponse({"status": "unavailable", "down": down}, status_code=503)
        return JSONResponse({"status": "ready"})

    async def metrics_text(self, request: Request) -> Response:
        return PlainTextResponse(self.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/readyz", self.readyz, methods=["GET"]),
            Route("/metrics", self.metrics_text, methods=["GET"]),
        ]


def _ping(db: Connection) -> None:
    db.execute(text("SELECT 1"))


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {READY_TIMEOUT_S:g} s"
    return f"{exc.__class__.__name__}: {exc}".splitlines()[0][:300]


def starlette(routes: list[BaseRoute]) -> Starlette:
    """An app whose requests fail fast during a database outage (503 with Retry-After)."""
    return Starlette(
        routes=routes,
        middleware=[Middleware(FailFast)],
        exception_handlers={DatabaseUnavailable: database_down},
    )


def metrics_app(app: App, metrics: Metrics) -> Starlette:
    """Health, readiness and metrics alone: the worker's own port (`cwi run`, CWI_METRICS_PORT)."""
    return starlette(Health(app, metrics).routes())
