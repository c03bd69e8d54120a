"""The listener's ASGI app: webhook calls, health, readiness and metrics.

Built by ``create_app`` from an open ``App`` (database and bus) — it owns neither, so `cwi serve`
and the tests decide their lifetime.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass

from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import Connection, text
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from config_db.webhooks import hash_token
from worker.bootstrap import App
from worker.buses.base import BusStatsUnavailable
from worker.console.app import console_app
from worker.ingress.admin import admin_app
from worker.ingress.ratelimit import RateLimiter
from worker.ingress.receiving import Accepted, Refused, lookup, parse, publish_new
from worker.logging import get_logger
from worker.metrics import Metrics
from worker.outage import DatabaseUnavailable, impatient

log = get_logger()

MAX_BODY = 1024 * 1024  # bytes; vendors send single events, far below this
READY_TIMEOUT_S = 5.0
RETRY_LATER = {"Retry-After": "5"}


class _FailFast:
    """Requests never wait out a database outage: they fail at once, and the answer is a 503 with
    ``Retry-After`` (an ERP retries its webhook; an operator tries again)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with impatient():
            await self.app(scope, receive, send)


async def _database_down(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": "unavailable", "message": str(exc)}, status_code=503, headers=RETRY_LATER)


@dataclass
class Ingress:
    app: App
    metrics: Metrics
    limiter: RateLimiter

    async def webhook(self, request: Request) -> Response:
        provider, token = request.path_params["provider"], request.path_params["token"]
        self.metrics.webhooks_received.inc()
        try:
            accepted = await self._receive(request, provider, token)
        except Refused as refused:
            return self._refuse(provider, refused)
        except DatabaseUnavailable as exc:  # never accepted and then lost: the vendor retries later
            return self._refuse(provider, Refused(503, "unavailable", str(exc), headers=RETRY_LATER))
        except Exception as exc:  # the bus down: the vendor should retry
            log.exception("webhook not taken", provider=provider, error=f"{exc.__class__.__name__}: {exc}")
            return self._refuse(
                provider,
                Refused(503, "unavailable", "cannot take webhooks right now: retry", headers=RETRY_LATER),
            )
        (self.metrics.webhooks_duplicates if accepted.duplicate else self.metrics.webhooks_accepted).inc()
        self.metrics.webhook_envelopes.inc(len(accepted.published))
        log.info(
            "webhook accepted", provider=provider, client_id=accepted.client_id,
            published=len(accepted.published), duplicates=len(accepted.duplicates),
        )  # fmt: skip
        return JSONResponse(
            {"published": accepted.published, "duplicates": accepted.duplicates}, status_code=202
        )

    def _refuse(self, provider: str, refused: Refused) -> Response:
        self.metrics.webhooks_rejected.labels(reason=refused.reason).inc()
        log.warning(
            "webhook refused", provider=provider, status=refused.status, reason=refused.reason,
            detail=str(refused),
        )  # fmt: skip
        body = {"error": refused.reason, "message": str(refused)}
        return JSONResponse(body, status_code=refused.status, headers=refused.headers)

    async def _receive(self, request: Request, provider: str, token: str) -> Accepted:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY:
            raise _too_large(int(declared))
        spec = await lookup(self.app.db, self.app.settings.secret, token, provider)
        wait = self.limiter.take(hash_token(token))
        if wait > 0:
            raise Refused(
                429,
                "rate_limited",
                f"too many calls on this webhook URL: retry in {math.ceil(wait)} s",
                headers={"Retry-After": str(math.ceil(wait))},
            )
        body = await read_body(request, MAX_BODY)
        changes = parse(spec, request.headers, body)
        return await publish_new(self.app.db, self.app.bus, spec, changes, body)

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


def _ping(db: Connection) -> None:
    db.execute(text("SELECT 1"))


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {READY_TIMEOUT_S:g} s"
    return f"{exc.__class__.__name__}: {exc}".splitlines()[0][:300]


def _too_large(size: int | None) -> Refused:
    got = f"{size} bytes" if size is not None else "more"
    return Refused(413, "too_large", f"webhook body is {got}; the limit is {MAX_BODY} bytes")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, read no further than ``limit`` bytes (a lying or absent Content-Length included)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(None)
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(app: App, metrics: Metrics, *, limiter: RateLimiter | None = None) -> Starlette:
    s = app.settings
    ingress = Ingress(app, metrics, limiter or RateLimiter(s.webhook_rate_per_s, s.webhook_rate_burst))
    routes = [
        Route("/webhooks/{provider}/{token}", ingress.webhook, methods=["POST"]),
        Route("/healthz", ingress.healthz, methods=["GET"]),
        Route("/readyz", ingress.readyz, methods=["GET"]),
        Route("/metrics", ingress.metrics_text, methods=["GET"]),
        # The operator API (dead letters): 401 without CWI_ADMIN_API_KEY's key, 503 when it is unset.
        Mount("/admin", app=admin_app(app.db, app.bus, s)),
        # The operator console: pages on the same services as the admin API (worker/console).
        Mount("/console", app=console_app(app.db, app.bus, s)),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(_FailFast)],
        exception_handlers={DatabaseUnavailable: _database_down},
    )
