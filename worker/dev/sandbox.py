"""``cwi sandbox``: the sandbox ERP on its own, until interrupted.

The socket is bound before anything else, so ``--port 0`` takes any free port; the first line on
standard output is the base URL (what ``worker.dev.bench.sandbox_process`` reads).
"""

from __future__ import annotations

import socket
import sys

from aiohttp import web

from providers.generic_rest.sandbox import create_app
from worker.sockets import base_url, listen


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (OSError when the port is taken or the host unknown)."""
    sock = listen(host, port)
    sock.listen(128)
    return sock


def serve_sandbox(
    sock: socket.socket,
    *,
    token: str,
    latency_ms: float = 0,
    fail_rate: float = 0,
    db_path: str | None = None,
) -> None:
    """Print the base URL, then serve the sandbox ERP on ``sock`` until SIGINT/SIGTERM."""
    app = create_app(token=token, latency_ms=latency_ms, fail_rate=fail_rate, db_path=db_path)
    print(base_url(sock), flush=True)
    web.run_app(app, sock=sock, print=lambda *_: None, access_log=None, handle_signals=True)
    sys.stdout.flush()
