"""``cwi serve``: the webhook listener, optionally with the worker loop in the same process."""

from __future__ import annotations

from typing import Annotated

import typer

from worker.cli.common import err_console, fail, run_async, settings, start_long_running


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
    # Imported here: the HTTP stack is not needed by the other commands' start-up.
    from worker.ingress.run import run_listener
    from worker.sockets import listen

    s = settings()
    start_long_running(s, worker=worker)
    try:
        sock = listen(host, port)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    suffix = " (worker running)" if worker else ""

    def listening(url: str) -> None:
        err_console.print(f"listening on {url}{suffix}", markup=False)

    run_async(run_listener(s, sock, with_worker=worker, on_listening=listening))
    err_console.print("stopped", markup=False)
