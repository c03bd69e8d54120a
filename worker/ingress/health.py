"""/healthz, /readyz and /metrics beside the webhooks in `cwi serve` (what they answer:
``worker.health``), and the listener's fail-fast rule: requests never wait out a database outage,
they answer 503 with ``Retry-After``."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from worker import health
from worker.bootstrap import App
from worker.metrics import Metrics
from worker.outage import DatabaseUnavailable, impatient


class FailFast:
    """Requests never wait out a database outage: they fail at once, and the answer is a 503 with
    ``Retry-After`` (an ERP retries its webhook; an operator tries again)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with impatient():
            await self.app(scope, receive, send)


async def database_down(request: Request, exc: Exception) -> Response:
    return JSONResponse(
        {"error": "unavailable", "message": str(exc)}, status_code=503, headers=health.RETRY_LATER
    )


@dataclass
class Health:
    app: App
    metrics: Metrics

    async def healthz(self, request: Request) -> Response:
        return JSONResponse(health.LIVE)

    async def readyz(self, request: Request) -> Response:
        status, payload = await health.readiness(self.app)
        return JSONResponse(payload, status_code=status)

    async def metrics_text(self, request: Request) -> Response:
        return PlainTextResponse(self.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/readyz", self.readyz, methods=["GET"]),
            Route("/metrics", self.metrics_text, methods=["GET"]),
        ]


def starlette(routes: list[BaseRoute]) -> Starlette:
    """An app whose requests fail fast during a database outage (503 with Retry-After)."""
    return Starlette(
        routes=routes,
        middleware=[Middleware(FailFast)],
        exception_handlers={DatabaseUnavailable: database_down},
    )
