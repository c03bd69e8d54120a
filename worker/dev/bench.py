"""``cwi bench``: the real pipeline over a bus against the sandbox ERP in its own process.

``--bus local`` (the default) brings its own SQLite database; ``--bus azure`` uses the Service Bus
entity that ``CWI_SERVICEBUS_*`` names (bench/azure.py starts the test peer and sets them).
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from config_db import clients
from config_db.secrets import SecretBox
from worker.bootstrap import open_app, upgrade_database
from worker.buses.base import OutgoingMessage
from worker.dev import fixtures as fx
from worker.logging import configure
from worker.settings import Settings


@contextmanager
def sandbox_process(token: str, latency_ms: float) -> Iterator[str]:
    """``cwi sandbox --port 0`` in a child process (its own core); yields the base URL it reports.

    The child binds the port itself and prints its URL: no port is chosen here and then taken by
    someone else before the child binds it (tests run in parallel).
    """
    cmd = [
        sys.executable,
        "-m",
        "worker.cli.main",
        "sandbox",
        "--port",
        "0",
        "--token",
        token,
        "--latency-ms",
        str(latency_ms),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # noqa: S603 - our own CLI
    try:
        assert proc.stdout is not None and proc.stderr is not None
        url = proc.stdout.readline().strip()  # the first line, printed once the port is bound
        if not url.startswith("http://"):
            proc.kill()
            raise RuntimeError(f"the sandbox did not start: {proc.stderr.read().strip()[-500:]}")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:  # still sleeping out its latency for requests nobody awaits
            proc.kill()
            proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def messages_for(events: int, n_clients: int) -> list[OutgoingMessage]:
    import random

    rng = random.Random(1)
    out = []
    for i in range(events):
        client_id = f"bench{i % n_clients}"
        env = fx.envelope(client_id, "customer.created", fx.customer(client_id, i, rng), seq=i)
        out.append(OutgoingMessage(body=json.dumps(env).encode(), message_id=env["id"], session_id=client_id))
    return out


async def _run(
    settings: Settings, base_url: str, token: str, events: int, n_clients: int
) -> tuple[float, float]:
    """Seconds to the last settlement, and the CPU seconds this process spent meanwhile."""
    box = SecretBox(settings.secret)
    credentials = box.encrypt({"token": token})

    def provision(db: Any) -> None:
        for i in range(n_clients):
            clients.add_client(db, f"bench{i}", f"Bench {i}")
            clients.set_connection(
                db, clients.StoredConnection(f"bench{i}", "generic_rest", base_url, {}, credentials, True)
            )

    async with open_app(settings, http=True) as app:
        await app.db.run(provision)
        await app.bus.publish(messages_for(events, n_clients))
        worker = app.worker()
        # Timed to the last settlement: a remote bus's idle probe at the end is not work.
        last_settled = started = time.perf_counter()
        cpu_started = cpu_settled = time.process_time()

        def settled(_: object) -> None:
            nonlocal last_settled, cpu_settled
            last_settled = time.perf_counter()
            cpu_settled = time.process_time()

        worker.on_settled = settled
        stats = await worker.run(until_idle=True)
        seconds, cpu = last_settled - started, cpu_settled - cpu_started
    if stats.counts.get("created", 0) != events:
        raise RuntimeError(f"benchmark run was not clean: {dict(stats.counts)}")
    return seconds, cpu


def run_bench(
    *,
    events: int,
    concurrency: int,
    latency_ms: float,
    clients_n: int | None = None,
    bus: Literal["local", "azure"] = "local",
) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="cwi-bench-"))
    n_clients = clients_n or max(64, concurrency * 2)
    settings = Settings(
        database_url=f"sqlite:///{workdir / 'bench.db'}",
        secret_key=secrets.token_urlsafe(32),
        concurrency=concurrency,
        bus=bus,
    )
    configure(fmt="json", level="WARNING", stream=open(os.devnull, "w"))  # noqa: SIM115
    upgrade_database(settings)
    token = secrets.token_urlsafe(16)
    with sandbox_process(token, latency_ms) as base_url:
        seconds, cpu = asyncio.run(_run(settings, base_url, token, events, n_clients))
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "bus": bus,
        "events": events,
        "concurrency": concurrency,
        "latency_ms": latency_ms,
        "seconds": round(seconds, 3),
        "events_per_s": round(events / seconds, 1),
        "cpu_ms_per_event": round(cpu * 1000 / events, 3),
        "rss_mb": round(rss_mb, 1),
    }
