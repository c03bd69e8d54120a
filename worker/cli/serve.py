"""``cwi serve``: the webhook listener, optionally with the worker loop in the same process."""

from __future__ import annotations

import asyncio
import signal
import socket
from typing import Annotated

import typer

from worker.bootstrap import open_app
from worker.cli.common import err_console, fail, require_migrated, run_async, settings
from worker.ingress.app import create_app
from worker.ingress.server import base_url, listen, make_server
from worker.metrics import MeteredPipeline, Metrics
from worker.settings import Settings


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free port)")] = 8080,
    worker: Annotated[
        bool, typer.Option("--worker/--no-worker", help="Also run the worker loop in this process")
    ] = False,
) -> None:
    """Receive the ERPs' webhook calls (POST /webhooks/PROVIDER/TOKEN); /healthz, /readyz, /metrics.

    SIGINT/SIGTERM stop it: the listener stops accepting, the worker finishes what is in flight.
    """
    s = settings()
    require_migrated(s)
    try:
        sock = listen(host, port)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    run_async(_serve(s, sock, with_worker=worker))


async def _serve(s: Settings, sock: socket.socket, *, with_worker: bool) -> None:
    metrics = Metrics()
    async with open_app(s, http=with_worker) as app:
        server = make_server(create_app(app, metrics))
        runner = None
        if with_worker:
            runner = app.worker()
            runner.pipeline = MeteredPipeline(runner.pipeline, metrics)
            runner.on_settled = metrics.chain_settled(runner.on_settled)

        def stop() -> None:
            server.should_exit = True
            if runner is not None:
                runner.stop()

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)
        tasks: list[asyncio.Task[object]] = [asyncio.create_task(server.serve(sockets=[sock]))]
        if runner is not None:
            tasks.append(asyncio.create_task(runner.run()))
        err_console.print(
            f"listening on {base_url(sock)}" + (" (worker running)" if runner else ""), markup=False
        )
        try:
            # Either part ending (a signal, or a failure) ends both.
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            stop()
            await asyncio.gather(*tasks)
        finally:
            sock.close()
    err_console.print("stopped", markup=False)
