"""Development commands: sandbox, demo, bench (their code lives in worker.dev, loaded on use)."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated

import typer

from worker.cli.common import console, fail, run_async
from worker.dev import MAX_CLIENTS, MAX_EVENTS, MAX_LATENCY_MS
from worker.settings import MAX_CONCURRENCY


class BenchBus(StrEnum):
    local = "local"
    azure = "azure"


def sandbox(
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on (0: any free port)")] = 8900,
    host: Annotated[str, typer.Option(help="Interface to bind")] = "127.0.0.1",
    token: Annotated[
        str, typer.Option(help="Bearer token clients must send", envvar="CWI_SANDBOX_TOKEN")
    ] = "sandbox",  # noqa: S107 - the sandbox's well-known default
    latency_ms: Annotated[
        float, typer.Option(min=0, max=MAX_LATENCY_MS, help="Delay before each answer")
    ] = 0.0,
    fail_rate: Annotated[float, typer.Option(min=0, max=1, help="Fraction of requests answered 503")] = 0.0,
    db: Annotated[str | None, typer.Option(help="SQLite file to keep records in (default: memory)")] = None,
) -> None:
    """Run the sandbox ERP: the reference implementation of CW's generic REST interface."""
    from worker.dev.sandbox import bind, serve_sandbox

    try:
        sock = bind(host, port)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    serve_sandbox(sock, token=token, latency_ms=latency_ms, fail_rate=fail_rate, db_path=db)


def demo() -> None:
    """Run the worker end to end on a temporary SQLite database against the sandbox ERP."""
    from worker.dev.demo import run_demo

    raise typer.Exit(run_async(run_demo(console)))


def bench(
    events: Annotated[int, typer.Option(min=1, max=MAX_EVENTS, help="Events to process")] = 5000,
    concurrency: Annotated[int, typer.Option(min=1, max=MAX_CONCURRENCY, help="Messages in flight")] = 16,
    latency_ms: Annotated[
        float, typer.Option(min=0, max=MAX_LATENCY_MS, help="Sandbox ERP latency per request")
    ] = 0.0,
    clients: Annotated[
        int | None,
        typer.Option(min=1, max=MAX_CLIENTS, help="Distinct clients (default 2 x concurrency x processes)"),
    ] = None,
    bus: Annotated[
        BenchBus, typer.Option(help="local, or azure: the entity CWI_SERVICEBUS_* names (see bench/azure.py)")
    ] = BenchBus.local,
    database_url: Annotated[
        str | None,
        typer.Option(
            help="A PostgreSQL server (postgresql+psycopg://…): the run makes a scratch database there"
        ),
    ] = None,
    processes: Annotated[
        int,
        typer.Option(
            min=1, max=64, help="Worker processes sharing the queue (more than one needs --database-url)"
        ),
    ] = 1,
    in_place: Annotated[
        bool,
        typer.Option(
            help="Run on the database --database-url names, as it is and kept (its clients named afresh)"
        ),
    ] = False,
    cli: Annotated[
        bool,
        typer.Option(
            help="The worker is `cwi run` in a process of its own (metrics served): the peak RSS "
            "operators see; its time includes the process's start"
        ),
    ] = False,
) -> None:
    """Benchmark the real pipeline over a bus; prints one JSON object."""
    from worker.dev.bench import run_bench

    if processes > 1 and not database_url:
        fail("several worker processes share one PostgreSQL database: give --database-url", 2)
    if cli and (processes > 1 or bus is not BenchBus.local):
        fail("--cli runs one `cwi run` on the local bus: leave out --processes and --bus", 2)
    if in_place and not database_url:
        fail("--in-place runs on the database --database-url names: give --database-url", 2)
    if database_url:
        _bench_database(database_url)

    result = run_bench(
        events=events,
        concurrency=concurrency,
        latency_ms=latency_ms,
        clients_n=clients,
        bus=bus.value,
        database_url=database_url,
        processes=processes,
        in_place=in_place,
        cli=cli,
    )
    print(json.dumps(result))


def _bench_database(url: str) -> None:
    """A --database-url the benchmark can use, or stop naming the option (never echoing the URL: it
    may hold a password)."""
    from sqlalchemy.exc import ArgumentError

    from config_db.database import make_url

    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError:
        fail("--database-url is not a database URL (like postgresql+psycopg://user@host:5432/postgres)", 2)
    if backend not in ("postgresql", "sqlite"):
        fail(f"--database-url: the benchmark runs on PostgreSQL or SQLite, not {backend}", 2)
