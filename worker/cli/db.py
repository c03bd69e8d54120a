"""``cwi db``: the configuration database's schema."""

from __future__ import annotations

import typer

from worker.cli.common import console, refuse_in_memory, settings

app = typer.Typer(help="Database schema.", no_args_is_help=True)


@app.command("upgrade")
def upgrade() -> None:
    """Create or migrate the configuration database (CWI_DATABASE_URL) to the latest schema."""
    from worker.bootstrap import upgrade_database

    s = settings()
    refuse_in_memory(s)
    revision = upgrade_database(s)
    console.print(f"database at revision {revision}")
