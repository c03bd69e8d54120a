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
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from config_db import clients
from config_db.secrets import SecretBox, generate_key
from worker.bootstrap import open_app
from worker.buses.base import OutgoingMessage
from worker.dev import fixtures as fx
from worker.logging import configure
from worker.runtime import tune_gc
from worker.settings import Settings, load_settings


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


_PUBLISH_BATCH = 500


def iter_messages(events: int, n_clients: int, prefix: str = "bench") -> Iterator[OutgoingMessage]:
    import random

    rng = random.Random(1)
    for i in range(events):
        client_id = f"{prefix}{i % n_clients}"
        env = fx.envelope(client_id, "customer.created", fx.customer(client_id, i, rng), seq=i)
        yield OutgoingMessage(body=json.dumps(env).encode(), message_id=env["id"], session_id=client_id)


def messages_for(events: int, n_clients: int, prefix: str = "bench") -> list[OutgoingMessage]:
    return list(iter_messages(events, n_clients, prefix))


async def _prepare(app: Any, base_url: str, token: str, events: int, n_clients: int, prefix: str) -> None:
    """Provision ``n_clients`` clients named ``prefix0``… on the sandbox and publish the events."""
    credentials = SecretBox(app.settings.secret).encrypt({"token": token})

    def provision(db: Any) -> None:
        for i in range(n_clients):
            client_id = f"{prefix}{i}"
            clients.add_client(db, client_id, f"Bench {i}")
            clients.set_connection(
                db, clients.StoredConnection(client_id, "generic_rest", base_url, {}, credentials, True)
            )

    await app.db.run(provision)
    # Published 500 at a time, made as they go: the harness holding every message at once would
    # count in the worker process's peak memory (about 14 MB for 5,000), which a worker never holds.
    batch: list[OutgoingMessage] = []
    for message in iter_messages(events, n_clients, prefix):
        batch.append(message)
        if len(batch) == _PUBLISH_BATCH:
            await app.bus.publish(batch)
            batch = []
    if batch:
        await app.bus.publish(batch)


async def _prepare_only(
    settings: Settings, base_url: str, token: str, events: int, n_clients: int, prefix: str
) -> None:
    async with open_app(settings) as app:
        await _prepare(app, base_url, token, events, n_clients, prefix)


def _cli_env(settings: Settings, **variables: str) -> dict[str, str]:
    """The environment of a ``cwi`` child process: none of ours ``CWI_*``, no .env file, the run's
    database and ``variables`` (``CWI_`` + their upper-cased names)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CWI_")}
    env |= {"CWI_DATABASE_URL": settings.database_url, "CWI_ENV_FILE": ""}
    return env | {f"CWI_{name.upper()}": value for name, value in variables.items()}


def _migrate(settings: Settings) -> None:
    """``cwi db upgrade`` in a process of its own, as it runs before ``cwi run``: Alembic (8 MB)
    is never loaded in the process whose memory is measured."""
    cmd = [sys.executable, "-m", "worker.cli.main", "db", "upgrade"]
    done = subprocess.run(cmd, env=_cli_env(settings), capture_output=True, text=True, check=False)  # noqa: S603 - our own CLI
    if done.returncode != 0:
        raise RuntimeError(f"cwi db upgrade failed: {done.stderr.strip()[-500:]}")


async def _run(
    settings: Settings, base_url: str, token: str, events: int, n_clients: int, prefix: str
) -> tuple[float, float]:
    """Seconds to the last settlement, and the CPU seconds this process spent meanwhile."""
    tune_gc()  # as `cwi run` does once started
    async with open_app(settings, http=True) as app:
        await _prepare(app, base_url, token, events, n_clients, prefix)
        worker = app.worker()
        # Timed from a connected worker to the last settlement: connecting at start (half a second
        # with the Service Bus SDK, done once per process) and a remote bus's idle probe at the end
        # are not work. bench/sb_bare.py times its loops the same way.
        await app.bus.open()
        last_settled = started = time.perf_counter()
        cpu_started = cpu_settled = time.process_time()
        count = 0

        def settled(_: object) -> None:
            # The harness's own work per event is one clock read; the CPU clock (a system call)
            # is read once, at the last settlement.
            nonlocal last_settled, cpu_settled, count
            last_settled = time.perf_counter()
            count += 1
            if count >= events:
                cpu_settled = time.process_time()

        worker.on_settled = settled
        stats = await worker.run(until_idle=True)
        seconds, cpu = last_settled - started, cpu_settled - cpu_started
    if stats.counts.get("created", 0) != events:
        raise RuntimeError(f"benchmark run was not clean: {dict(stats.counts)}")
    return seconds, cpu


@contextmanager
def scratch_database(server_url: str | None, *, in_place: bool = False) -> Iterator[str]:
    """A fresh, empty database for one run: SQLite in a temporary folder, or on the PostgreSQL
    server ``server_url`` names a database of its own; either is gone afterwards. ``in_place``:
    the database ``server_url`` names, as it is, kept afterwards."""
    if in_place and server_url:
        yield server_url
        return
    if server_url is None or server_url.startswith("sqlite"):
        with tempfile.TemporaryDirectory(prefix="cwi-bench-") as folder:
            yield f"sqlite:///{Path(folder) / 'bench.db'}"
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"cwi_bench_{secrets.token_hex(4)}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def _child(settings: Settings, ready: Any, go: Any, results: Any) -> None:
    """One worker process of a ``--processes`` run: open the app, wait for the start, work until idle."""
    configure(fmt="json", level="WARNING", stream=open(os.devnull, "w"))  # noqa: SIM115

    async def work() -> dict[str, Any]:
        tune_gc()  # as `cwi run` does once started
        async with open_app(settings, http=True) as app:
            worker = app.worker()
            times = {"first": 0.0, "last": 0.0, "cpu0": 0.0, "cpu1": 0.0}

            def settled(_: object) -> None:
                times["last"] = time.time()

            worker.on_settled = settled
            ready.set()
            await asyncio.get_running_loop().run_in_executor(None, go.wait)
            times["first"], times["cpu0"] = time.time(), time.process_time()
            stats = await worker.run(until_idle=True)
            times["cpu1"] = time.process_time()  # the idle probe at the end included: a few ms
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return {**times, "counts": dict(stats.counts), "rss_mb": rss_mb}

    results.put(asyncio.run(work()))


def _run_processes(settings: Settings, events: int, n: int) -> dict[str, Any]:
    """``n`` worker processes on the same database (spawned: no state shared) work the queue
    ``_prepare`` filled down together; timed from the common start to the last settlement anywhere."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    go, results = ctx.Event(), ctx.Queue()
    readies = [ctx.Event() for _ in range(n)]
    children = [ctx.Process(target=_child, args=(settings, r, go, results)) for r in readies]
    for child in children:
        child.start()
    for r in readies:
        r.wait(120)
    go.set()
    started = time.time()
    done = [results.get(timeout=600) for _ in children]
    for child in children:
        child.join(30)
    created = sum(d["counts"].get("created", 0) for d in done)
    if created != events:
        raise RuntimeError(f"benchmark run was not clean: {[d['counts'] for d in done]}")
    seconds = max(d["last"] for d in done) - started
    cpu = sum(d["cpu1"] - d["cpu0"] for d in done)
    return {"seconds": seconds, "cpu": cpu, "rss_mb": max(d["rss_mb"] for d in done)}


def _cli_worker(settings: Settings, events: int) -> dict[str, Any]:
    """``cwi run`` as operators run it, in a process of its own (the CLI loaded, /metrics served on a
    free port), over the queue ``_prepare`` filled; stopped with SIGTERM once the queue is drained.
    Its peak RSS and CPU come from the kernel's accounting of that one process (``os.wait4``)."""
    env = _cli_env(
        settings,
        secret_key=settings.secret or "",
        concurrency=str(settings.concurrency),
        metrics_port="0",
        log_level="WARNING",
    )
    cmd = [sys.executable, "-m", "worker.cli.main", "run", "--json"]
    started = time.perf_counter()
    with tempfile.TemporaryFile() as errors:  # a file, not a pipe: a chatty worker never blocks on it
        child = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=errors)  # noqa: S603

        async def drained() -> None:
            async with open_app(settings) as app:
                while child.poll() is None:
                    stats = await app.bus.stats()
                    if stats.active == stats.scheduled == stats.locked == 0:
                        return
                    await asyncio.sleep(0.1)

        def failed(how: str) -> RuntimeError:
            errors.seek(0)
            return RuntimeError(f"cwi run {how}: {errors.read().decode(errors='replace').strip()[-500:]}")

        asyncio.run(drained())
        seconds = time.perf_counter() - started
        if child.poll() is not None:  # reaped by poll: no accounting left to read
            raise failed("stopped early")
        child.send_signal(signal.SIGTERM)
        _, status, usage = os.wait4(child.pid, 0)
        out = child.stdout.read().decode() if child.stdout else ""
        if os.waitstatus_to_exitcode(status) != 0:
            raise failed("failed")
    outcomes = json.loads(out)["outcomes"]
    if outcomes.get("created", 0) != events:
        raise RuntimeError(f"benchmark run was not clean: {outcomes}")
    return {"seconds": seconds, "cpu": usage.ru_utime + usage.ru_stime, "rss_mb": usage.ru_maxrss / 1024}


def run_bench(
    *,
    events: int,
    concurrency: int,
    latency_ms: float,
    clients_n: int | None = None,
    bus: Literal["local", "azure"] = "local",
    database_url: str | None = None,
    processes: int = 1,
    in_place: bool = False,
    cli: bool = False,
) -> dict[str, Any]:
    """``database_url``: a PostgreSQL server to run on (a scratch database is made there), else
    SQLite; ``processes`` worker processes share the queue (more than one needs PostgreSQL).
    ``in_place``: run on the database ``database_url`` names, as it is (e.g. ten million sync-log
    rows from bench/synclog.py), with clients named afresh so that runs never meet. ``cli``: the
    worker is ``cwi run`` in a process of its own (``_cli_worker``): its peak RSS is the one operators
    see; its time includes the process's start (about a second), so its events/s are lower."""
    # Twice the messages in flight, over every process: each client's messages go one at a time,
    # so fewer clients than that would bound the run (at 100 ms with 64 in flight, four processes
    # over 128 clients did 510/s, over 512 clients 698/s).
    n_clients = clients_n or max(64, concurrency * 2 * processes)
    configure(fmt="json", level="WARNING", stream=open(os.devnull, "w"))  # noqa: SIM115
    token = secrets.token_urlsafe(16)
    prefix = f"bench-{secrets.token_hex(3)}-" if in_place else "bench"
    with scratch_database(database_url, in_place=in_place) as url:
        if processes > 1 and url.startswith("sqlite"):
            raise ValueError("several worker processes need PostgreSQL (--database-url)")
        # A generated key, as operators are told to make (`cwi secrets generate-key`): a passphrase
        # would be stretched with scrypt at start, 16 MiB for a moment, the peak RSS of a quiet run.
        settings = load_settings(  # a bad CWI_* variable: one line naming it (SettingsError)
            database_url=url, secret_key=generate_key(), concurrency=concurrency, bus=bus
        )
        _migrate(settings)
        with sandbox_process(token, latency_ms) as base_url:
            if cli or processes > 1:  # the worker(s) in processes of their own
                asyncio.run(_prepare_only(settings, base_url, token, events, n_clients, prefix))
                got = _cli_worker(settings, events) if cli else _run_processes(settings, events, processes)
                seconds, cpu, rss_mb = got["seconds"], got["cpu"], got["rss_mb"]
            else:
                seconds, cpu = asyncio.run(_run(settings, base_url, token, events, n_clients, prefix))
                rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "bus": bus,
        "database": url.split(":", 1)[0].split("+", 1)[0],
        "processes": processes,
        "worker": "cwi run" if cli else "spawned" if processes > 1 else "in-process",
        "events": events,
        "concurrency": concurrency,
        "latency_ms": latency_ms,
        "seconds": round(seconds, 3),
        "events_per_s": round(events / seconds, 1),
        "cpu_ms_per_event": round(cpu * 1000 / events, 3),
        "rss_mb": round(rss_mb, 1),
    }
