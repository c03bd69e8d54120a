"""A webhook receiver for tests: real HTTP on 127.0.0.1 that keeps every call it gets.

``gate`` starts open; a test clears it to hold the receiver's answers (to show that a fake ERP
answers its own request without waiting for the callback it fires).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web

from tests.fakes import serve_app


@dataclass
class Receiver:
    url: str = ""
    calls: asyncio.Queue[tuple[dict[str, str], bytes]] = field(default_factory=asyncio.Queue)
    gate: asyncio.Event = field(default_factory=asyncio.Event)

    async def next(self, timeout: float = 5.0) -> tuple[dict[str, str], bytes]:
        """The next call's headers and raw body."""
        return await asyncio.wait_for(self.calls.get(), timeout)

    async def _handle(self, request: web.Request) -> web.Response:
        self.calls.put_nowait((dict(request.headers), await request.read()))
        await self.gate.wait()
        return web.Response(status=202)


@asynccontextmanager
async def serve_receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    receiver.gate.set()
    app = web.Application()
    app.router.add_post("/hook", receiver._handle)
    async with serve_app(app) as url:
        receiver.url = f"{url}/hook"
        try:
            yield receiver
        finally:
            receiver.gate.set()  # let held answers go, so the server can shut down
