"""``cwi synclog``: read the synchronization log; ``cwi synclog prune``: its retention."""

from __future__ import annotations

import datetime as dt
import json
import sys
from functools import partial
from typing import Annotated

import typer
from rich.table import Table

from config_db import sync_log
from worker.bootstrap import database
from worker.cli.common import console, fail, require_migrated, settings
from worker.settings import MAX_LISTED

app = typer.Typer(
    help="The synchronization log, oldest first among the newest LIMIT entries.",
    invoke_without_command=True,
)


@app.callback()
def synclog(
    ctx: typer.Context,
    client: Annotated[str | None, typer.Option(help="Only this client")] = None,
    message: Annotated[str | None, typer.Option(help="Only this envelope id")] = None,
    limit: Annotated[int, typer.Option(min=1, max=MAX_LISTED, help="Newest N entries")] = 50,
    json_out: Annotated[bool, typer.Option("--json", help="JSON lines, one entry each")] = False,
) -> None:
    """The synchronization log, oldest first among the newest LIMIT entries.

    `cwi synclog prune --older-than 90d` deletes old entries (see `cwi synclog prune --help`)."""
    if ctx.invoked_subcommand is not None:
        return
    s = settings()
    require_migrated(s)
    with database(s) as db:
        rows = db.run_sync(partial(sync_log.entries, client_id=client, message_id=message, limit=limit))
    rows.reverse()
    if json_out:
        for row in rows:
            print(json.dumps({k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in row.items()}))
        return
    table = Table(
        "at", "message", "client", "provider", "dir", "entity", "cw id", "external id", "action", "detail"
    )
    for row in rows:
        at = row["at"]
        table.add_row(
            at.strftime("%Y-%m-%d %H:%M:%S") if at else "",  # type: ignore[attr-defined]
            *(str(row[k] or "") for k in ("message_id", "client_id", "provider", "direction", "entity")),
            *(str(row[k] or "") for k in ("cw_id", "external_id", "action", "detail")),
        )
    console.print(table)


@app.command("prune")
def prune(
    older_than: Annotated[
        str, typer.Option("--older-than", help="Age of the entries to delete: 90d, 12h, 30m, 45s")
    ],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count what would be deleted")] = False,
    batch: Annotated[int, typer.Option(min=1, max=100_000, help="Entries per transaction")] = 1000,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object")] = False,
) -> None:
    """Delete sync-log entries and record values older than the given age, in short batches.

    Each batch is a transaction of its own: a running worker waits at most one batch. Entries of a
    message that has not finished (in flight, waiting for a retry, dead-lettered) are kept whatever
    their age: the worker and a replay read them. So are the newest values of each record: the
    console still finds it. CWI_SYNCLOG_RETENTION makes `cwi run` do this periodically."""
    from config_db import retention
    from config_db.durations import BadDuration, format_duration, parse_duration

    try:
        window = parse_duration(older_than)
    except BadDuration as exc:
        fail(f"--older-than {exc}", 2)
    s = settings()
    require_migrated(s)
    so_far = [0, 0]  # batches, entries (each batch committed as it goes)

    def tally(step: retention.Step, _: float) -> None:
        so_far[0] += 1
        so_far[1] += step.deleted

    with database(s) as db:
        try:
            done = retention.prune(db.run_sync, window, batch=batch, dry_run=dry_run, on_batch=tally)
        except KeyboardInterrupt:
            verb = "would have deleted" if dry_run else "deleted (each batch committed)"
            print(
                f"interrupted after {so_far[0]} batches: {so_far[1]} entries {verb}; "
                "run the command again to go on",
                file=sys.stderr,
            )
            raise typer.Exit(130) from None
    result = {
        "older_than": format_duration(window),
        "before": done.before.isoformat(),
        "dry_run": dry_run,
        "deleted": 0 if dry_run else done.deleted,
        "would_delete": done.deleted if dry_run else None,
        "kept": done.kept,
        "batches": done.batches,
        "record_values": {
            "deleted": 0 if dry_run else done.values_deleted,
            "would_delete": done.values_deleted if dry_run else None,
            "kept": done.values_kept,
        },
    }
    if json_out:
        print(json.dumps(result))
        return
    verb = "would delete" if dry_run else "deleted"
    console.print(
        f"{verb} {done.deleted} sync-log entries older than {done.before:%Y-%m-%d %H:%M:%S} UTC; "
        f"kept {done.kept} older ones still needed (unfinished messages); {verb} {done.values_deleted} "
        f"record values, kept the {done.values_kept} older ones that are the newest of their record",
        markup=False,
        highlight=False,
    )
