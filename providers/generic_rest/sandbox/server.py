"""Running the sandbox ERP: in-process for tests and the demo, or blocking for ``cwi sandbox``."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

from aiohttp import web

from providers.generic_rest.sandbox.app import Sandbox, json_errors
from providers.generic_rest.sandbox.control import Control
from providers.generic_rest.sandbox.store import open_store

SANDBOX = web.AppKey("sandbox", Sandbox)
#: where ``cwi sandbox`` listens unless told otherwise: the document's default ``{base}``.
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8900


def create_app(
    *,
    token: str,
    latency_ms: float = 0,
    fail_rate: float = 0,
    seed: int | None = None,
    db_path: str | None = None,
    api_user: str = "cwi",
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    rate_limit: float | None = None,
) -> web.Application:
    """The sandbox ERP as an aiohttp application; ``app[SANDBOX]`` is its state.

    It serves the interface at the root of its address: its ``{base}`` is ``http://host:port``.
    ``api_user`` is the token's subject; ``rate_limit`` (requests a second) answers 429 beyond it.
    """
    sandbox = Sandbox(
        token=token,
        latency_ms=latency_ms,
        fail_rate=fail_rate,
        seed=seed,
        store=open_store(db_path),
        api_user=api_user,
        rate_limit=rate_limit,
    )
    if webhook_url is not None and webhook_secret is not None:
        sandbox.webhooks.subscribe(webhook_url, webhook_secret)
    app = web.Application(middlewares=[json_errors])
    app[SANDBOX] = sandbox
    app.router.add_get("/v1/_ping", sandbox.ping)
    app.router.add_get("/v1/{entity}", sandbox.listing)
    for method in ("PUT", "GET", "DELETE"):
        app.router.add_route(method, "/v1/{entity}/{cw_id}", sandbox.record)
    Control(sandbox).routes(app)

    async def close_store(app: web.Application) -> None:
        await sandbox.webhooks.close()
        sandbox.store.close()

    app.on_cleanup.append(close_store)
    return app


class SandboxServer:
    """``async with SandboxServer(token="t") as sb: sb.base_url`` — listens on 127.0.0.1, a free port
    (or ``port``)."""

    def __init__(
        self,
        *,
        token: str,
        latency_ms: float = 0,
        fail_rate: float = 0,
        seed: int | None = None,
        db_path: str | None = None,
        api_user: str = "cwi",
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        rate_limit: float | None = None,
        port: int = 0,
    ) -> None:
        self._port = port  # 0: a free one; a given one lets a test stop the ERP and bring it back
        self.app = create_app(
            token=token,
            latency_ms=latency_ms,
            fail_rate=fail_rate,
            seed=seed,
            db_path=db_path,
            api_user=api_user,
            webhook_url=webhook_url,
            webhook_secret=webhook_secret,
            rate_limit=rate_limit,
        )
        # A short grace on exit: a handler still sleeping out latency_ms must not hold up the tests.
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=0.25)
        self.base_url = ""

    @property
    def sandbox(self) -> Sandbox:
        return self.app[SANDBOX]

    async def stats(self) -> dict[str, Any]:
        """What ``GET /_sandbox/stats`` answers, without the HTTP round trip."""
        return self.sandbox.stats.as_json()

    async def drain_webhooks(self) -> None:
        """Until every webhook the sandbox fired so far was delivered (or given up)."""
        await self.sandbox.webhooks.drain()

    async def __aenter__(self) -> Self:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self._port)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._runner.cleanup()


def run_sandbox(
    host: str,
    port: int,
    *,
    token: str,
    latency_ms: float = 0,
    fail_rate: float = 0,
    db_path: str | None = None,
    seed: int | None = None,
    api_user: str = "cwi",
    rate_limit: float | None = None,
) -> None:
    """Serve the sandbox ERP until interrupted (``cwi sandbox --port N``)."""
    app = create_app(
        token=token,
        latency_ms=latency_ms,
        fail_rate=fail_rate,
        seed=seed,
        db_path=db_path,
        api_user=api_user,
        rate_limit=rate_limit,
    )
    web.run_app(app, host=host, port=port, access_log=None)
