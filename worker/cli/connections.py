"""``cwi connections``: each client's ERP connection (settings, encrypted credentials)."""

from __future__ import annotations

import json
from functools import partial
from typing import Annotated

import typer
from rich.table import Table

from config_db import clients as clients_repo
from config_db.secrets import SecretBox, SecretKeyError
from worker.bootstrap import database, open_provider
from worker.cli.common import connection_of, console, fail, parse_pairs, require_migrated, run_async, settings

app = typer.Typer(help="Each client's ERP connection.", no_args_is_help=True)

# Spelled out so that `cwi connections list` need not import every provider; a unit test keeps it
# in step with providers.registry.KINDS.
KINDS_HELP = "Provider kind: generic_rest, tripletex, visma_net, uni_economy"


@app.command("set")
def set_(
    client_id: Annotated[str, typer.Argument(help="Client id")],
    provider: Annotated[str, typer.Argument(help=KINDS_HELP)],
    base_url: Annotated[str | None, typer.Option(help="The ERP's API base URL")] = None,
    setting: Annotated[list[str] | None, typer.Option(help="key=value (repeatable); merged")] = None,
    credential: Annotated[list[str] | None, typer.Option(help="key=value (repeatable), encrypted")] = None,
    unset: Annotated[list[str] | None, typer.Option(help="Setting or credential name to remove")] = None,
    enabled: Annotated[
        bool, typer.Option("--enabled/--disabled", help="Switch the connection on or off")
    ] = True,
) -> None:
    """Create or update a client's connection. Settings and credentials merge into what is there."""
    from providers.registry import KINDS

    if provider not in KINDS:
        fail(f"unknown provider {provider!r}: choose one of {', '.join(KINDS)}")
    new_settings = parse_pairs(setting, "--setting")
    new_credentials = parse_pairs(credential, "--credential")
    s = settings()
    require_migrated(s)
    with database(s) as db:
        existing = db.run_sync(partial(clients_repo.get_connection, client_id=client_id))
        same_kind = existing is not None and existing.kind == provider
        url = base_url or (existing.base_url if same_kind and existing else None)
        if not url:
            fail("--base-url is required for a new connection")
        if not url.startswith(("http://", "https://")):
            fail(f"--base-url must be an http(s) URL, got {url!r}")
        try:
            box = (
                SecretBox(s.secret)
                if (new_credentials or (same_kind and existing and existing.credentials))
                else None
            )
            merged_settings = {**(existing.settings if same_kind and existing else {}), **new_settings}
            old_creds = box.decrypt(existing.credentials) if box and same_kind and existing else {}
            merged_creds = {**old_creds, **new_credentials}
        except SecretKeyError as exc:
            fail(str(exc))
        for name in unset or []:
            merged_settings.pop(name, None)
            merged_creds.pop(name, None)
        stored = clients_repo.StoredConnection(
            client_id=client_id,
            kind=provider,
            base_url=url.rstrip("/"),
            settings=merged_settings,
            credentials=box.encrypt(merged_creds) if box else "",
            enabled=enabled,
        )
        try:
            db.run_sync(partial(clients_repo.set_connection, conn=stored))
        except clients_repo.ClientNotFoundError as exc:
            fail(str(exc))
    console.print(
        f"{provider} connection for {client_id} saved "
        f"({len(merged_settings)} settings, credentials: {', '.join(sorted(merged_creds)) or 'none'})"
    )


@app.command("list")
def list_(json_out: Annotated[bool, typer.Option("--json", help="JSON lines")] = False) -> None:
    """List connections; credential names are shown, never their values."""
    s = settings()
    require_migrated(s)
    with database(s) as db:
        rows = db.run_sync(clients_repo.list_connections)
    box = SecretBox(s.secret) if s.secret else None
    table = Table("client", "provider", "base url", "enabled", "settings", "credentials")
    for row in rows:
        try:
            names = (
                sorted(box.decrypt(row.credentials)) if box else (["(encrypted)"] if row.credentials else [])
            )
        except SecretKeyError:
            names = ["(cannot decrypt: wrong CWI_SECRET_KEY)"]
        settings_text = ", ".join(f"{k}={v}" for k, v in sorted(row.settings.items()))
        if json_out:
            record = {
                "client_id": row.client_id,
                "provider": row.kind,
                "base_url": row.base_url,
                "enabled": row.enabled,
                "settings": dict(row.settings),
                "credentials": names,
            }
            print(json.dumps(record))
        else:
            table.add_row(
                row.client_id, row.kind, row.base_url, str(row.enabled), settings_text, ", ".join(names)
            )
    if not json_out:
        console.print(table)


@app.command("test")
def test(client_id: Annotated[str, typer.Argument(help="Client id")]) -> None:
    """Call the client's ERP (authenticate and one read) and report OK or why not."""
    from providers.errors import ProviderError

    s = settings()
    require_migrated(s)
    with database(s) as db:
        stored = connection_of(db, client_id)

    async def check() -> str:
        async with open_provider(s, stored) as provider:
            return await provider.check()

    try:
        summary = run_async(check())
    except ProviderError as exc:
        fail(f"FAILED: {client_id} ({stored.kind}): {exc}")
    console.print(f"OK: {summary}")
