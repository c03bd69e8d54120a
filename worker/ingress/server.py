"""Running an ASGI app on uvicorn inside our own event loop (for `cwi serve` and the tests)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Generator

import uvicorn
from starlette.types import ASGIApp

from worker.sockets import base_url, listen


class Server(uvicorn.Server):
    """uvicorn without its own signal handling: the caller decides how the process stops."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def make_server(asgi: ASGIApp) -> Server:
    config = uvicorn.Config(asgi, lifespan="off", log_config=None, access_log=False, server_header=False)
    return Server(config)


async def wait_started(server: Server, task: asyncio.Task[object]) -> bool:
    """True once uvicorn accepts connections; False if it stopped first (``task`` holds why)."""
    while not server.started:
        if task.done():
            return False
        await asyncio.sleep(0.01)  # uvicorn offers no event for this
    return True


@contextlib.asynccontextmanager
async def serving(asgi: ASGIApp, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve ``asgi`` until the block ends; yields the base URL (the real port when ``port`` is 0)."""
    sock = listen(host, port)
    server = make_server(asgi)
    task: asyncio.Task[object] = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        if not await wait_started(server, task):
            task.result()  # startup failed: raise why
            raise RuntimeError("uvicorn stopped before it started")
        yield base_url(sock)
    finally:
        server.should_exit = True
        await task
        sock.close()
