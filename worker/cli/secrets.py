"""``cwi secrets``: the key that encrypts connection credentials and subscription secrets at rest."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import typer

from worker.bootstrap import database
from worker.cli.common import console, err_console, fail, require_migrated, settings

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from config_db.secrets import SecretBox
    from worker.db import Database

app = typer.Typer(
    help="The keys that encrypt connection credentials and subscription secrets (CWI_SECRET_KEY).",
    no_args_is_help=True,
)


@app.command("generate-key")
def generate_key() -> None:
    """Print a new random key for CWI_SECRET_KEY (put it first: CWI_SECRET_KEY=NEW,OLD)."""
    from config_db.secrets import generate_key as new_key

    print(new_key())


@app.command("rotate")
def rotate() -> None:
    """Re-encrypt every connection's credentials and every subscription's signing secrets with the
    first key of CWI_SECRET_KEY.

    Roll out CWI_SECRET_KEY=NEW,OLD to every worker first (both keys decrypt), run this, then drop
    OLD. One connection or subscription per transaction: it can be stopped and run again.
    """
    from config_db import clients, subscriptions
    from config_db.secrets import SecretBox, SecretKeyError

    s = settings()
    require_migrated(s)
    try:
        box = SecretBox(s.secret)
    except SecretKeyError as exc:
        fail(str(exc), 2)
    failed: list[str] = []
    with database(s) as db:
        connections = [c.client_id for c in db.run_sync(clients.list_connections)]
        subs = [sub.id for sub in db.run_sync(subscriptions.listed)]
        lines = [
            _rotate_each(db, "connection(s)", connections, clients.rotate_credentials, box, failed),
            _rotate_each(db, "subscription secret(s)", subs, subscriptions.rotate_key, box, failed),
        ]
    for problem in failed:
        err_console.print(f"  {problem}", markup=False, highlight=False)
    for line in lines:
        console.print(line)
    if failed:
        fail("some secrets could not be read: add the key they were stored with to CWI_SECRET_KEY", 2)


def _rotate_each(
    db: Database,
    label: str,
    ids: list[str],
    rotate_one: Callable[[Connection, str, SecretBox], bool],
    box: SecretBox,
    failed: list[str],
) -> str:
    """Each of ``ids`` re-encrypted in its own transaction; the count line (the unreadable ones
    added to ``failed``)."""
    from config_db.secrets import SecretKeyError

    rotated = current = unreadable = 0
    for one in ids:

        def work(conn: Connection, one: str = one) -> bool:
            return rotate_one(conn, one, box)

        try:
            if db.run_sync(work):
                rotated += 1
            else:
                current += 1
        except SecretKeyError as exc:
            failed.append(str(exc))
            unreadable += 1
    return f"{rotated} {label} re-encrypted, {current} already current, {unreadable} unreadable"
