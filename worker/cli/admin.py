"""Configuration commands: db, clients, connections, contracts."""

from __future__ import annotations

import json
from functools import partial
from typing import Annotated

import aiohttp
import typer
from rich.table import Table

from config_db import clients as clients_repo
from config_db.database import make_engine
from config_db.migrate import current_revision, upgrade
from config_db.secrets import SecretBox, SecretKeyError
from contracts import envelope_json_schema
from providers import registry
from providers.errors import ProviderError
from worker.bootstrap import make_database
from worker.cli.common import console, fail, parse_pairs, require_migrated, run_async, settings
from worker.cli.mapping import warn_after_set
from worker.messaging.connections import spec_from_stored

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
clients_app = typer.Typer(help="CW clients (tenants).", no_args_is_help=True)
connections_app = typer.Typer(help="Each client's ERP connection.", no_args_is_help=True)
contracts_app = typer.Typer(help="The data contracts.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the configuration database (CWI_DATABASE_URL) to the latest schema."""
    s = settings()
    engine = make_engine(s.database_url)
    try:
        upgrade(engine)
        console.print(f"database at revision {current_revision(engine)}")
    finally:
        engine.dispose()


@clients_app.command("add")
def clients_add(
    client_id: Annotated[str, typer.Argument(help="The client id used in envelopes, e.g. acme")],
    name: Annotated[str | None, typer.Option(help="Display name (default: the id)")] = None,
) -> None:
    """Add a client."""
    s = settings()
    require_migrated(s)
    db = make_database(s)
    try:
        db.run_sync(partial(clients_repo.add_client, client_id=client_id, name=name or client_id))
    except clients_repo.ClientExistsError as exc:
        fail(str(exc))
    console.print(f"client {client_id} added")


@clients_app.command("list")
def clients_list() -> None:
    """List clients."""
    s = settings()
    require_migrated(s)
    rows = make_database(s).run_sync(clients_repo.list_clients)
    table = Table("id", "name")
    for client_id, name in rows:
        table.add_row(client_id, name)
    console.print(table)


@connections_app.command("set")
def connections_set(
    client_id: Annotated[str, typer.Argument(help="Client id")],
    provider: Annotated[str, typer.Argument(help=f"Provider kind: {', '.join(registry.KINDS)}")],
    base_url: Annotated[str | None, typer.Option(help="The ERP's API base URL")] = None,
    setting: Annotated[list[str] | None, typer.Option(help="key=value (repeatable); merged")] = None,
    credential: Annotated[list[str] | None, typer.Option(help="key=value (repeatable), encrypted")] = None,
    unset: Annotated[list[str] | None, typer.Option(help="Setting or credential name to remove")] = None,
    enabled: Annotated[
        bool, typer.Option("--enabled/--disabled", help="Switch the connection on or off")
    ] = True,
) -> None:
    """Create or update a client's connection. Settings and credentials merge into what is there."""
    if provider not in registry.KINDS:
        fail(f"unknown provider {provider!r}: choose one of {', '.join(registry.KINDS)}")
    new_settings = parse_pairs(setting, "--setting")
    new_credentials = parse_pairs(credential, "--credential")
    s = settings()
    require_migrated(s)
    db = make_database(s)
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
    if enabled:
        warn_after_set(s, client_id)  # the mapping checked against the ERP (worker/cli/mapping.py)


@connections_app.command("list")
def connections_list(json_out: Annotated[bool, typer.Option("--json", help="JSON lines")] = False) -> None:
    """List connections; credential names are shown, never their values."""
    s = settings()
    require_migrated(s)
    rows = make_database(s).run_sync(clients_repo.list_connections)
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


@connections_app.command("test")
def connections_test(client_id: Annotated[str, typer.Argument(help="Client id")]) -> None:
    """Call the client's ERP (authenticate and one read) and report OK or why not."""
    s = settings()
    require_migrated(s)
    db = make_database(s)
    stored = db.run_sync(partial(clients_repo.get_connection, client_id=client_id))
    if stored is None:
        fail(f"client {client_id!r} has no connection: add one with `cwi connections set`")

    async def check() -> str:
        spec = spec_from_stored(stored, s.secret)
        async with aiohttp.ClientSession() as http:
            return await registry.build(spec, http).check()

    try:
        summary = run_async(check())
    except ProviderError as exc:
        fail(f"FAILED: {client_id} ({stored.kind}): {exc}")
    console.print(f"OK: {summary}")


@contracts_app.command("schema")
def contracts_schema() -> None:
    """Print the JSON Schema of the envelope."""
    print(json.dumps(envelope_json_schema(), indent=2))
