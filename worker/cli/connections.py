"""``cwi connections``: each client's ERP connection (settings, encrypted credentials)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from config_db import clients as clients_repo
from config_db.secrets import SecretBox, SecretKeyError
from worker.bootstrap import database, open_app, open_provider
from worker.cli.common import (
    cli_actor,
    connection_of,
    console,
    err_console,
    fail,
    parse_pairs,
    require_migrated,
    run_async,
    settings,
)
from worker.cli.mapping import register as register_mapping

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
    """Create or update a client's connection. Settings and credentials merge into what is there;
    each is checked now (a bad value is refused with its fix), not first when a message needs it."""
    from worker.operators.provisioning import ConnectionRequest, Provisioning, ProvisioningError

    request = ConnectionRequest(
        kind=provider,
        base_url=base_url,
        settings=parse_pairs(setting, "--setting"),
        credentials=parse_pairs(credential, "--credential"),
        unset=list(unset or []),
        enabled=enabled,
    )
    s = settings()
    require_migrated(s)

    async def save() -> tuple[int, list[str]]:
        async with open_app(s) as app:
            view = await Provisioning(app.db, s).save_connection(cli_actor(), client_id, request)
            return len(view.settings), list(view.credentials)

    try:
        count, names = run_async(save())
    except ProvisioningError as exc:
        for problem in exc.problems:
            err_console.print(f"  {problem}", markup=False, highlight=False)
        fail(str(exc), 2)
    saved = ", ".join(names) or "none"
    console.print(f"{provider} connection for {client_id} saved ({count} settings, credentials: {saved})")
    if enabled:
        from worker.cli.mapping import warn_after_set

        warn_after_set(s, client_id)  # the mapping checked against the ERP: warnings


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
def test(
    client_id: Annotated[str, typer.Argument(help="Client id")],
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object")] = False,
) -> None:
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
        if json_out:
            print(
                json.dumps({"client_id": client_id, "provider": stored.kind, "ok": False, "error": str(exc)})
            )
            raise typer.Exit(1) from None
        fail(f"FAILED: {client_id} ({stored.kind}): {exc}")
    if json_out:
        print(json.dumps({"client_id": client_id, "provider": stored.kind, "ok": True, "summary": summary}))
        return
    console.print(f"OK: {summary}")


register_mapping(app)  # validate, export, import (worker/cli/mapping.py)
