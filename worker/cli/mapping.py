"""``cwi connections validate | export | import``: a connection's mapping checked against its ERP, and
carried from one client to another. ``register`` adds them to the ``connections`` group."""

from __future__ import annotations

import dataclasses
import json
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from worker.cli.common import (
    console,
    err_console,
    exit_with,
    fail,
    read_input,
    require_migrated,
    run_async,
    settings,
)

if TYPE_CHECKING:
    from worker.reconcile.validate import Validation
    from worker.settings import Settings


def register(group: typer.Typer) -> None:
    group.command("validate")(validate)
    group.command("export")(export)
    group.command("import")(import_mapping)


def _validation(s: Settings, client_id: str, mapping: dict[str, str] | None = None) -> Validation:
    from worker.bootstrap import open_app
    from worker.reconcile.validate import ValidationError, validate_client

    async def check() -> Validation:
        async with open_app(s, http=True) as app:
            return await validate_client(app, client_id, mapping)

    try:
        return run_async(check())
    except ValidationError as exc:
        fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - the ERP's typed error, one line
        fail(f"validating {client_id} failed: {exc.__class__.__name__}: {exc}")


def _show(found: Validation, *, warning: bool = False) -> None:
    from worker.logging import redactor

    prefix = "warning: " if warning else ""
    out = err_console if warning else console
    for problem in found.problems:
        out.print(redactor.scrub(f"{prefix}{problem.message}"), markup=False)
    for note in found.notes:
        out.print(redactor.scrub(f"{prefix}not checked: {note}"), markup=False)


def validate(
    client_id: Annotated[str, typer.Argument(help="Client id")],
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object")] = False,
) -> None:
    """Check the mapping against the ERP: settings naming a VAT code, account, department, project
    template, currency or employee the ERP does not have, and VAT rates of recent invoices without a
    mapping, each with the setting to fix. Exit 0 when all fits, 1 when not (or it could not be
    checked)."""
    s = settings()
    require_migrated(s)
    found = _validation(s, client_id)
    if json_out:
        print(json.dumps(found.as_json(), ensure_ascii=False))
    else:
        _show(found)
        if not found.problems and not found.notes:
            console.print(f"OK: the {found.kind} mapping of {client_id} fits its ERP", markup=False)
    exit_with(1 if found.problems or found.notes else 0)


def warn_after_set(s: Settings, client_id: str) -> None:
    """After ``connections set``: the mapping's problems as warnings (the connection is saved)."""
    from worker.bootstrap import open_app
    from worker.reconcile.validate import validate_client

    async def check() -> Validation:
        async with open_app(s, http=True) as app:
            return await validate_client(app, client_id)

    try:
        _show(run_async(check()), warning=True)
    except Exception as exc:  # noqa: BLE001 - saving worked; only the check could not be made
        from worker.logging import redactor

        text = redactor.scrub(f"warning: the mapping was not checked against the ERP: {exc}")
        err_console.print(text, markup=False)


def export(
    client_id: Annotated[str, typer.Argument(help="Client id")],
    include_ids: Annotated[
        bool, typer.Option("--include-ids", help="Also settings that name things in this ERP company only")
    ] = False,
) -> None:
    """Print the connection's mapping as JSON (provider kind and settings; never credentials)."""
    from config_db import clients as clients_repo
    from worker.bootstrap import make_database
    from worker.reconcile.mapping_file import export as export_mapping

    s = settings()
    require_migrated(s)
    stored = make_database(s).run_sync(partial(clients_repo.get_connection, client_id=client_id))
    if stored is None:
        fail(f"client {client_id!r} has no connection: add one with `cwi connections set`")
    print(json.dumps(export_mapping(stored, include_ids=include_ids), indent=2, ensure_ascii=False))


def import_mapping(
    client_id: Annotated[str, typer.Argument(help="Client id whose connection takes the mapping")],
    file: Annotated[Path, typer.Argument(help="A file `cwi connections export` wrote")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the changes and the check; apply nothing")
    ] = False,
) -> None:
    """Replace the connection's mapping settings with the file's (its company settings stay), after
    showing each change and checking the result against the target ERP."""
    from config_db import clients as clients_repo
    from worker.bootstrap import make_database
    from worker.reconcile.mapping_file import MappingFileError, changes, merged, parse

    try:
        mapping = parse(read_input(str(file)))
    except MappingFileError as exc:
        fail(f"{file}: {exc}", 2)
    s = settings()
    require_migrated(s)
    db = make_database(s)
    stored = db.run_sync(partial(clients_repo.get_connection, client_id=client_id))
    if stored is None:
        fail(f"client {client_id!r} has no connection: create it with `cwi connections set` first")
    try:
        after = merged(stored, mapping)
    except MappingFileError as exc:
        fail(str(exc), 2)
    lines = changes(stored.settings, after)
    base_url = mapping.base_url or stored.base_url
    if base_url != stored.base_url:
        lines.append(f"~ base_url: {stored.base_url} → {base_url}")
    for line in lines or ["no changes"]:
        console.print(line, markup=False)
    found = _validation(s, client_id, after)
    _show(found, warning=True)
    if dry_run or not lines:
        exit_with(0)
    updated: Any = dataclasses.replace(stored, settings=after, base_url=base_url)
    db.run_sync(partial(clients_repo.set_connection, conn=updated))
    console.print(f"{client_id}: {len(lines)} change(s) applied", markup=False)
