"""Running an ASGI app on uvicorn inside our own event loop (for `cwi serve` and the tests)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Generator

import uvicorn
from starlette.types import ASGIApp


class Server(uvicorn.Server):
    """uvicorn without its own signal handling: the caller decides how the process stops."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def listen(host: str, port: int) -> socket.socket:
    """A bound socket; OSError (port taken, bad host) surfaces here, before anything else starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def make_server(asgi: ASGIApp) -> Server:
    config = uvicorn.Config(asgi, lifespan="off", log_config=None, access_log=False, server_header=False)
    return Server(config)


def base_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


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
