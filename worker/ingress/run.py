"""The listener as a process: uvicorn on a bound socket, and the worker loop beside it if asked."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Callable

from worker.bootstrap import open_app
from worker.ingress.app import create_app
from worker.ingress.server import make_server, wait_started
from worker.metrics import Metrics
from worker.observing import observed
from worker.reconcile.schedule import scheduled
from worker.settings import Settings
from worker.sockets import base_url


async def run_listener(
    s: Settings, sock: socket.socket, *, with_worker: bool, on_listening: Callable[[str], None]
) -> None:
    """Serve until SIGINT/SIGTERM: the listener stops accepting, the worker finishes what is in flight."""
    metrics = Metrics(max_clients=s.metrics_max_clients)
    async with open_app(s, http=with_worker) as app:
        server = make_server(create_app(app, metrics))
        runner = app.worker() if with_worker else None

        def stop() -> None:
            server.should_exit = True
            if runner is not None:
                runner.stop()

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)
        try:
            async with observed(app, metrics, runner), contextlib.AsyncExitStack() as beside:
                tasks: list[asyncio.Task[object]] = [asyncio.create_task(server.serve(sockets=[sock]))]
                if runner is not None:
                    tasks.append(asyncio.create_task(runner.run()))
                if with_worker:  # scheduled reconciliation and mapping validation, beside the worker
                    await beside.enter_async_context(scheduled(app, metrics=metrics))
                if await wait_started(server, tasks[0]):
                    on_listening(base_url(sock))
                # Either part ending (a signal, or a failure) ends both.
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                stop()
                await asyncio.gather(*tasks)
        finally:
            sock.close()
