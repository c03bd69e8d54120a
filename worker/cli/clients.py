"""``cwi clients``: the CW clients (tenants) the worker serves."""

from __future__ import annotations

from functools import partial
from typing import Annotated

import typer
from rich.table import Table

from config_db import clients as clients_repo
from worker.bootstrap import database
from worker.cli.common import console, fail, require_migrated, settings

app = typer.Typer(help="CW clients (tenants).", no_args_is_help=True)


@app.command("add")
def add(
    client_id: Annotated[str, typer.Argument(help="The client id used in envelopes, e.g. acme")],
    name: Annotated[str | None, typer.Option(help="Display name (default: the id)")] = None,
) -> None:
    """Add a client."""
    s = settings()
    require_migrated(s)
    with database(s) as db:
        try:
            db.run_sync(partial(clients_repo.add_client, client_id=client_id, name=name or client_id))
        except clients_repo.ClientExistsError as exc:
            fail(str(exc))
    console.print(f"client {client_id} added")


@app.command("list")
def list_() -> None:
    """List clients."""
    s = settings()
    require_migrated(s)
    with database(s) as db:
        rows = db.run_sync(clients_repo.list_clients)
    table = Table("id", "name")
    for client_id, name in rows:
        table.add_row(client_id, name)
    console.print(table)
