"""`cwi run`'s own port (CWI_METRICS_PORT): /healthz, /readyz and /metrics (what they answer:
``worker.health``).

Served by aiohttp's web server, not the listener's uvicorn and Starlette: the worker has aiohttp
loaded already for its ERP calls, and those two would add about 2.3 MB to its memory for three
routes. The same fail-fast rule as the listener's: a request never waits out a database outage.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from worker import health
from worker.bootstrap import App
from worker.metrics import Metrics
from worker.outage import impatient
from worker.sockets import base_url

SHUTDOWN_S = 2.0  # a scrape under way when the worker stops gets this long to finish


def _json(payload: dict[str, Any], status: int = 200) -> web.Response:
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)  # as the listener's Starlette
    return web.Response(text=text, status=status, content_type="application/json")


@web.middleware
async def _fail_fast(request: web.Request, handler: Any) -> web.StreamResponse:
    """Database work here fails at once during an outage (/readyz then says so, rather than wait)."""
    with impatient():
        response: web.StreamResponse = await handler(request)
        return response


async def _own_name(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = "cwi"  # not aiohttp's name and version (404s and 405s too)


def health_app(app: App, metrics: Metrics) -> web.Application:
    async def healthz(request: web.Request) -> web.Response:
        return _json(health.LIVE)

    async def readyz(request: web.Request) -> web.Response:
        status, payload = await health.readiness(app)
        return _json(payload, status)

    async def metrics_text(request: web.Request) -> web.Response:
        return web.Response(body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    web_app = web.Application(middlewares=[_fail_fast])
    web_app.on_response_prepare.append(_own_name)
    web_app.router.add_get("/healthz", healthz)
    web_app.router.add_get("/readyz", readyz)
    web_app.router.add_get("/metrics", metrics_text)
    return web_app


@contextlib.asynccontextmanager
async def serving_health(app: App, metrics: Metrics, sock: socket.socket) -> AsyncIterator[str]:
    """Serve the worker's port on ``sock`` (bound) until the block ends; yields its base URL. The
    socket is closed at the end."""
    runner = web.AppRunner(
        health_app(app, metrics), access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_S
    )
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        yield base_url(sock)
    finally:
        await runner.cleanup()
        sock.close()
