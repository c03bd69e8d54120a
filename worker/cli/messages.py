"""The message commands: send, run, status, preview (``cwi synclog`` is ``worker/cli/synclog.py``)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import signal
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from config_db import sync_log
from worker.bootstrap import database, open_app, open_provider
from worker.buses.base import BusStats, BusStatsUnavailable, DeadLetterQueue
from worker.cli import common  # common.console, not the name: `cwi run` must not make (load) it
from worker.cli.common import (
    connection_of,
    exit_with,
    fail,
    require_migrated,
    run_async,
    settings,
    start_long_running,
)
from worker.publishing import read_envelopes, to_message
from worker.settings import MAX_CONCURRENCY

if TYPE_CHECKING:
    from rich.table import Table

    from contracts import Envelope
    from providers.base import PreparedRequest
    from worker.db import Database


def send(
    file: Annotated[str, typer.Argument(help="A JSON file (object, array or JSON lines), or - for stdin")],
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object")] = False,
) -> None:
    """Validate every envelope in FILE, then publish them all (or nothing, exit 2, if any is invalid)."""
    good = _valid_envelopes(file, "nothing was published")
    s = settings()
    require_migrated(s)

    async def publish() -> None:
        async with open_app(s) as app:
            await app.bus.publish([to_message(env, raw) for env, raw in good])

    run_async(publish())
    if json_out:
        print(json.dumps({"published": len(good), "ids": [env.id for env, _ in good]}))
        return
    common.console.print(f"published {len(good)} message(s)")


def run(
    until_idle: Annotated[
        bool, typer.Option(help="Exit when no message is ready and none is in flight")
    ] = False,
    concurrency: Annotated[
        int | None, typer.Option(min=1, max=MAX_CONCURRENCY, help="Messages in flight (CWI_CONCURRENCY)")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="The summary at stop as one JSON object")] = False,
) -> None:
    """Run the worker: receive, push to each client's ERP, settle. SIGINT/SIGTERM stop it gracefully.

    /healthz, /readyz and /metrics are served on CWI_METRICS_PORT (not with --until-idle)."""
    from worker.observing import MetricsPortUnavailable, metrics_socket, serving_metrics

    s = settings()
    start_long_running(s, worker=True)
    try:
        sock = None if until_idle else metrics_socket(s)
    except MetricsPortUnavailable as exc:
        fail(str(exc))

    async def main() -> None:
        async with open_app(s, http=True) as app:
            worker = app.worker(concurrency=concurrency)
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, worker.stop)
            from worker.reconcile.schedule import scheduled

            # A long-running worker checks the mappings at start; CWI_SCHEDULE=true runs the jobs too.
            async with (
                serving_metrics(app, worker, sock) as metrics,
                scheduled(app, metrics=metrics, jobs=s.schedule and not until_idle, validate=not until_idle),
            ):
                stats = await worker.run(until_idle=until_idle)
            if json_out:
                print(
                    json.dumps({"processed": stats.processed, "outcomes": dict(sorted(stats.counts.items()))})
                )
                return
            summary = ", ".join(f"{k}={v}" for k, v in sorted(stats.counts.items())) or "nothing"
            # Plain print: rich, loaded here, would add to the worker's peak memory at its last line.
            print(f"worker stopped after {stats.processed} message(s): {summary}", file=sys.stderr)

    run_async(main())


def status(json_out: Annotated[bool, typer.Option("--json", help="One JSON object")] = False) -> None:
    """Message counts on the bus (active, scheduled, locked, dead-lettered by reason), dead letters by
    client and reason, and the last success and failure per client and provider.

    On Azure Service Bus ``locked`` is n/a (null in JSON): it counts locked messages as active.
    """
    s = settings()
    require_migrated(s)

    async def stats() -> dict[str, object]:
        async with open_app(s) as app:
            try:
                counts: dict[str, object] = status_data(s.bus, await app.bus.stats())
            except BusStatsUnavailable as exc:
                # Say why, and still show what needs no counts (dead letters, the last outcomes).
                counts = {"bus": s.bus, "counts_unavailable": str(exc)}
            operators = await _operator_status(app.db, app.bus)
        return {**operators, **counts}

    data = run_async(stats())
    if json_out:
        print(json.dumps(data))
        return
    if "counts_unavailable" in data:
        common.err_console.print(f"bus counts unavailable: {data['counts_unavailable']}", markup=False)
    else:
        common.console.print(status_table(data))
    _print_operator_status(data)


def status_data(bus: str, st: BusStats) -> dict[str, object]:
    return {
        "bus": bus,
        "active": st.active,
        "scheduled": st.scheduled,
        # Service Bus counts locked messages as active and cannot say how many are locked.
        "locked": None if bus == "azure" else st.locked,
        "dead_lettered": st.dead_lettered,
        "dead_lettered_by_reason": dict(st.dead_lettered_by_reason),
    }


def status_table(data: dict[str, object]) -> Table:
    from rich.table import Table

    table = Table("", "count")
    for key in ("active", "scheduled", "locked", "dead_lettered"):
        table.add_row(key, "n/a" if data[key] is None else str(data[key]))
    by_reason = data["dead_lettered_by_reason"]
    assert isinstance(by_reason, dict)
    for reason, count in sorted(by_reason.items()):
        table.add_row(f"  {reason}", str(count))
    return table


async def _operator_status(db: Database, bus: DeadLetterQueue) -> dict[str, object]:
    from worker.operators.dlq import DeadLetterOperations
    from worker.operators.letters import Selection, grouped
    from worker.operators.overview import connection_state

    found: dict[str, object] = {}
    try:
        letters = await DeadLetterOperations(db, bus).select(Selection())
        found["dead_letters_by_client"] = grouped(letters)
    except Exception as exc:  # noqa: BLE001 - the dead letters cannot be read: say so, show the rest
        found["dead_letters_by_client"] = []
        found["dead_letters_unavailable"] = f"{exc.__class__.__name__}: {exc}".splitlines()[0]
    outcomes = await db.run(sync_log.last_outcomes)
    for row in outcomes:
        success, failure = row["last_success"], row["last_failure"]
        row["state"] = connection_state(success, failure)  # type: ignore[arg-type]
        for key in ("last_success", "last_failure"):
            at = row[key]
            row[key] = at.isoformat() if isinstance(at, dt.datetime) else None
    found["last_outcomes"] = outcomes
    return found


def _print_operator_status(data: dict[str, object]) -> None:
    from rich.table import Table

    if "dead_letters_unavailable" in data:
        common.err_console.print(
            f"dead letters unavailable: {data['dead_letters_unavailable']}", markup=False
        )
    groups = data["dead_letters_by_client"]
    assert isinstance(groups, list)
    if groups:
        dead = Table("client", "reason", "count", title="dead letters")
        for group in groups:
            dead.add_row(group["client_id"], group["reason"], str(group["count"]))
        common.console.print(dead)
    outcomes = data["last_outcomes"]
    assert isinstance(outcomes, list)
    if outcomes:
        last = Table("client", "provider", "state", "last success", "last failure")
        for row in outcomes:
            last.add_row(
                row["client_id"],
                row["provider"],
                row["state"],
                row["last_success"] or "",
                row["last_failure"] or "",
            )
        common.console.print(last)


def preview(
    file: Annotated[
        str, typer.Argument(help="Envelopes: a JSON object, an array or JSON lines; - for stdin")
    ],
    client: Annotated[str, typer.Option(help="Whose connection to preview with")],
) -> None:
    """Print the exact HTTP requests the client's provider would send for each event; send nothing."""
    from providers.errors import ProviderError
    from worker.previewing import PreviewError, preview_requests

    good = _valid_envelopes(file, "nothing was previewed")
    s = settings()
    require_migrated(s)
    with database(s) as db:
        stored = connection_of(db, client)

    async def plan() -> list[tuple[Envelope, list[PreparedRequest]]]:
        async with open_provider(s, stored) as provider:  # its HTTP session stays unused
            return preview_requests(provider, [env for env, _ in good])

    try:
        previews = run_async(plan())
    except (PreviewError, ProviderError) as exc:
        fail(str(exc))
    for env, requests in previews:
        print(f"# {env.id}  {env.type}  {env.cw_id}")
        for req in requests:
            print(f"{req.method} {req.url}")
            for name, value in req.headers.items():
                print(f"{name}: {value}")
            if req.json is not None:
                print(json.dumps(req.json, indent=2, ensure_ascii=False, default=str))
            print()


def _valid_envelopes(file: str, consequence: str) -> list[tuple[Envelope, str]]:
    """Every envelope in FILE (or stdin) with its raw JSON; exit 2 listing each bad record."""
    text = common.read_input(file)
    good, bad = read_envelopes(text)
    if bad:
        for record in bad:
            common.err_console.print(f"invalid: {record}", markup=False, highlight=False)
        common.err_console.print(f"{len(bad)} invalid record(s); {consequence}", markup=False)
        exit_with(2)
    if not good:
        fail("no envelopes found in the input")
    return good
