"""Servers the tests drive from the main thread, run on the session's background event loop.

``background_loop`` (tests/conftest.py) is one event loop in a daemon thread for the whole session;
``serve_sandbox`` starts a fresh sandbox ERP on it in milliseconds, where a ``cwi sandbox`` process
took a second to start. The CLI (in-process or a subprocess) and worker processes call it over HTTP.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from providers.generic_rest.sandbox import SandboxServer

START_TIMEOUT_S = 30


@contextmanager
def running_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop running in a daemon thread until the block ends."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="test-servers", daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        # Requests still being answered (a sandbox sleeping out its latency) end here, not as
        # "Task was destroyed but it is pending" when the loop is closed.
        asyncio.run_coroutine_threadsafe(_cancel_the_others(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


async def _cancel_the_others() -> None:
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@contextmanager
def serve_sandbox(loop: asyncio.AbstractEventLoop, **options: Any) -> Iterator[SandboxServer]:
    """A new sandbox ERP (``SandboxServer(**options)``) served on ``loop`` until the block ends."""
    server = SandboxServer(**options)
    asyncio.run_coroutine_threadsafe(server.__aenter__(), loop).result(START_TIMEOUT_S)
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.__aexit__(None, None, None), loop).result(START_TIMEOUT_S)
