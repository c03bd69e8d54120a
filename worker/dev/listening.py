"""The real webhook listener (``worker.ingress``) served beside an open ``App``, for `cwi demo` and tests.

The ERPs (the sandbox, the vendor fakes) call it exactly as they would call `cwi serve`: on
``/webhooks/{provider}/{token}``, with an endpoint issued as `cwi webhooks url` issues it (token
stored hashed, the secret kept as the connection's ``webhook_secret`` credential).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial

from config_db.secrets import SecretBox
from worker.bootstrap import App
from worker.ingress.app import create_app
from worker.ingress.ratelimit import RateLimiter
from worker.ingress.server import serving
from worker.metrics import Metrics
from worker.webhook_endpoints import issue


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a client's ERP calls us, and the secret it signs with."""

    url: str
    secret: str


@dataclass
class Listener:
    base_url: str
    app: App
    metrics: Metrics

    async def endpoint(self, client_id: str) -> Endpoint:
        """A new webhook URL for the client's connection (a secret is created if it has none)."""
        box = SecretBox(self.app.settings.secret)
        issued = await self.app.db.run(partial(issue, box=box, client_id=client_id, rotate=True))
        return Endpoint(f"{self.base_url}/webhooks/{issued.kind}/{issued.token}", issued.secret)


@asynccontextmanager
async def listening(app: App, *, limiter: RateLimiter | None = None) -> AsyncIterator[Listener]:
    """The listener on 127.0.0.1 (a free port) until the block ends; ``app`` stays the caller's."""
    metrics = Metrics()
    async with serving(create_app(app, metrics, limiter=limiter)) as base_url:
        yield Listener(base_url, app, metrics)
