"""``cwi clients``: the CW clients (tenants) the worker serves."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from config_db import clients as clients_repo
from worker.bootstrap import database, open_app
from worker.cli.common import (
    cli_actor,
    console,
    err_console,
    fail,
    read_input,
    require_migrated,
    run_async,
    settings,
)

app = typer.Typer(help="CW clients (tenants).", no_args_is_help=True)


@app.command("add")
def add(
    client_id: Annotated[str, typer.Argument(help="The client id used in envelopes, e.g. acme")],
    name: Annotated[str | None, typer.Option(help="Display name (default: the id)")] = None,
) -> None:
    """Add a client."""
    from worker.operators.provisioning import Provisioning, ProvisioningError

    s = settings()
    require_migrated(s)

    async def add() -> None:
        async with open_app(s) as app:
            await Provisioning(app.db, s).add_client(cli_actor(), client_id, name)

    try:
        run_async(add())
    except ProvisioningError as exc:
        fail(str(exc), 2)
    console.print(f"client {client_id} added")


@app.command("list")
def list_(json_out: Annotated[bool, typer.Option("--json", help="JSON lines")] = False) -> None:
    """List clients."""
    s = settings()
    require_migrated(s)
    with database(s) as db:
        rows = db.run_sync(clients_repo.list_clients)
    if json_out:
        for client_id, name in rows:
            print(json.dumps({"id": client_id, "name": name}))
        return
    table = Table("id", "name")
    for client_id, name in rows:
        table.add_row(client_id, name)
    console.print(table)


@app.command("import")
def import_(
    path: Annotated[
        str, typer.Argument(help="JSON lines file, one client and its connection a line; - for stdin")
    ],
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object")] = False,
) -> None:
    """Add clients and save their connections from one file, in one transaction (hundreds in seconds).

    Each line: {"client_id", "name"?, "provider", "base_url"?, "settings"?, "credentials"?, "unset"?,
    "enabled"?}; the rules of `cwi clients add` and `cwi connections set` (settings and credentials
    merge into what is stored). Every line is checked first: one bad line and nothing is imported."""
    from worker.operators.bulk import import_connections, read_lines
    from worker.operators.provisioning import Provisioning, ProvisioningError

    s = settings()
    require_migrated(s)
    text = read_input(path)

    async def load() -> dict[str, int]:
        entries = read_lines(text.splitlines())
        async with open_app(s) as app:
            return (await import_connections(Provisioning(app.db, s), cli_actor(), entries)).as_dict()

    try:
        done = run_async(load())
    except ProvisioningError as exc:
        for problem in exc.problems:
            err_console.print(f"  {problem}", markup=False, highlight=False)
        fail(str(exc), 2)
    if json_out:
        print(json.dumps(done))
        return
    console.print(f"{done['clients_added']} clients added, {done['connections_saved']} connections saved")
