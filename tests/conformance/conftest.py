"""The sandbox ERP served from its own thread and event loop, so that the kit (or a schemathesis
subprocess) can call it from anywhere: one for the whole session, or one per broken reference."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator

import pytest
from aiohttp import web
from aiohttp.typedefs import Middleware

from providers.generic_rest.sandbox import create_app

TOKEN = "conformance-token-1234"
SUBJECT = "cw-integration"


class ThreadServer:
    """``with ThreadServer(make_app) as base_url: …``: the app on 127.0.0.1, a free port."""

    def __init__(self, make_app: Callable[[], web.Application]) -> None:
        self._make_app = make_app
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            self._runner = web.AppRunner(self._make_app(), access_log=None, shutdown_timeout=0.25)
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", 0).start()
            self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
            self._ready.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()

    def __enter__(self) -> str:
        self._thread.start()
        assert self._ready.wait(10), "the sandbox did not start"
        return self.base_url

    def __exit__(self, *_: object) -> None:
        assert self._runner is not None
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def sandbox_app(*middlewares: Middleware) -> Callable[[], web.Application]:
    def make() -> web.Application:
        app = create_app(token=TOKEN, api_user=SUBJECT)
        app.middlewares.extend(middlewares)
        return app

    return make


@pytest.fixture(scope="session")
def sandbox_url() -> Iterator[str]:
    """One sandbox ERP for the session's conformance tests (each run writes its own ids)."""
    with ThreadServer(sandbox_app()) as url:
        yield url
