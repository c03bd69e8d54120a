"""``cwi secrets``: the keys that encrypt connection credentials at rest."""

from __future__ import annotations

from functools import partial

import typer

from worker.bootstrap import database
from worker.cli.common import console, err_console, fail, require_migrated, settings

app = typer.Typer(help="The keys that encrypt connection credentials (CWI_SECRET_KEY).", no_args_is_help=True)


@app.command("generate-key")
def generate_key() -> None:
    """Print a new random key for CWI_SECRET_KEY (put it first: CWI_SECRET_KEY=NEW,OLD)."""
    from config_db.secrets import generate_key as new_key

    print(new_key())


@app.command("rotate")
def rotate() -> None:
    """Re-encrypt every connection's credentials with the first key of CWI_SECRET_KEY.

    Roll out CWI_SECRET_KEY=NEW,OLD to every worker first (both keys decrypt), run this, then drop
    OLD. One connection per transaction: it can be stopped and run again.
    """
    from config_db import clients
    from config_db.secrets import SecretBox, SecretKeyError

    s = settings()
    require_migrated(s)
    try:
        box = SecretBox(s.secret)
    except SecretKeyError as exc:
        fail(str(exc), 2)
    rotated = current = 0
    failed: list[str] = []
    with database(s) as db:
        for stored in db.run_sync(clients.list_connections):
            try:
                if db.run_sync(partial(clients.rotate_credentials, client_id=stored.client_id, box=box)):
                    rotated += 1
                else:
                    current += 1
            except SecretKeyError as exc:
                failed.append(str(exc))
    for problem in failed:
        err_console.print(f"  {problem}", markup=False, highlight=False)
    console.print(
        f"{rotated} connection(s) re-encrypted, {current} already current, {len(failed)} unreadable"
    )
    if failed:
        fail("some credentials could not be read: add the key they were stored with to CWI_SECRET_KEY", 2)
