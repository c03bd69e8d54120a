"""Bulk provisioning: hundreds of clients and their connections from one file, in one transaction.

Each entry is what ``cwi clients add`` and ``cwi connections set`` would do for one client (the
client added when it is new, its name kept when it exists; settings and credentials merged by
``merge_connection``, the same rules and checks). Everything is checked first and written in one
transaction with its audit rows: a file with any problem writes nothing, and says every problem
with its line. ``cwi connections import FILE`` reads JSON lines::

    {"client_id": "acme", "name": "Acme AS", "provider": "generic_rest",
     "base_url": "https://erp.example.com/cw", "settings": {}, "credentials": {"token": "…"}}
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection

from config_db import clients as repo
from config_db import definitions, sync_log
from contracts import jsontext
from worker.operators.actors import Actor, audit_entry
from worker.operators.provisioning import (
    DEFINITION_SETTING,
    ConnectionRequest,
    Provisioning,
    ProvisioningError,
    client_problem,
    merge_connection,
)

_FIELDS = {"client_id", "name", "provider", "base_url", "settings", "credentials", "unset", "enabled"}


@dataclass(frozen=True, slots=True)
class Entry:
    line: int
    client_id: str
    name: str | None
    request: ConnectionRequest


@dataclass(slots=True)
class Imported:
    clients_added: list[str] = field(default_factory=list)
    connections_saved: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "clients_added": len(self.clients_added),
            "connections_saved": len(self.connections_saved),
        }


def _pairs(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValueError(f"{what} must be an object of strings")
    return dict(value)


def parse_entry(line: int, obj: Any) -> Entry:
    """One JSON object as an Entry; ValueError naming what is wrong."""
    if not isinstance(obj, dict):
        raise ValueError("expected a JSON object")
    unknown = set(obj) - _FIELDS
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(sorted(unknown))}")
    client_id, provider = obj.get("client_id"), obj.get("provider")
    if not isinstance(client_id, str):
        raise ValueError("client_id (a string) is required")
    name = obj.get("name")
    if name is not None and not isinstance(name, str):
        raise ValueError("name must be a string")
    problem = client_problem(client_id, name)
    if problem:
        raise ValueError(problem)
    if not isinstance(provider, str):
        raise ValueError("provider (a string) is required")
    base_url, enabled, unset = obj.get("base_url"), obj.get("enabled", True), obj.get("unset", [])
    if base_url is not None and not isinstance(base_url, str):
        raise ValueError("base_url must be a string")
    if not isinstance(enabled, bool):
        raise ValueError("enabled must be true or false")
    if not isinstance(unset, list) or not all(isinstance(u, str) for u in unset):
        raise ValueError("unset must be a list of names")
    request = ConnectionRequest(
        kind=provider,
        base_url=base_url,
        settings=_pairs(obj.get("settings"), "settings"),
        credentials=_pairs(obj.get("credentials"), "credentials"),
        unset=unset,
        enabled=enabled,
    )
    return Entry(line, client_id, name, request)


def read_lines(lines: Iterable[str]) -> list[Entry]:
    """Every entry of a JSON-lines text (blank lines skipped); ProvisioningError listing each bad line."""
    entries: list[Entry] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            entry = parse_entry(number, jsontext.loads(text))
        except ValueError as exc:  # json.JSONDecodeError included
            problems.append(f"line {number}: {exc}")
            continue
        if entry.client_id in seen:
            problems.append(
                f"line {number}: client {entry.client_id!r} is already on line {seen[entry.client_id]}"
            )
            continue
        seen[entry.client_id] = number
        entries.append(entry)
    if problems:
        raise ProvisioningError(f"{len(problems)} line(s) need fixing; nothing was imported", problems)
    return entries


async def import_connections(provisioning: Provisioning, actor: Actor, entries: Sequence[Entry]) -> Imported:
    """Add the new clients and save every connection in one transaction, audited in it; on any
    problem (a bad setting, a missing key, an unknown definition) nothing is written."""
    actor.require("admin", "importing connections")
    box = provisioning._box()

    def work(conn: Connection) -> Imported:
        done, problems = Imported(), []
        known = {client_id for client_id, _ in repo.list_clients(conn)}
        stored = {c.client_id: c for c in repo.list_connections(conn)}
        named = {d for d in (e.request.settings.get(DEFINITION_SETTING) for e in entries) if d}
        missing = {d for d in named if definitions.get_definition(conn, d) is None}
        for entry in entries:
            definition = entry.request.settings.get(DEFINITION_SETTING)
            if definition and (entry.request.kind != "generic_rest" or definition in missing):
                why = (
                    "is for generic_rest connections only" if definition not in missing else "does not exist"
                )
                problems.append(f"line {entry.line}: the provider definition {definition!r} {why}")
                continue
            try:
                connection, _ = merge_connection(
                    stored.get(entry.client_id), entry.client_id, entry.request, box
                )
            except ProvisioningError as exc:
                problems.extend(f"line {entry.line}: {p}" for p in [str(exc), *exc.problems])
                continue
            if problems:
                continue  # nothing is written: only the remaining problems are worth finding
            if entry.client_id not in known:
                repo.add_client(conn, entry.client_id, entry.name or entry.client_id)
                sync_log.record(conn, audit_entry(actor, "client_added", client_id=entry.client_id,
                                                  name=entry.name or entry.client_id))  # fmt: skip
                done.clients_added.append(entry.client_id)
            repo.set_connection(conn, connection)
            r = entry.request
            sync_log.record(conn, audit_entry(
                actor, "connection_saved", client_id=entry.client_id, provider=r.kind, base_url=r.base_url,
                settings=dict(r.settings), unset=list(r.unset), enabled=r.enabled, imported=True,
                credentials_written=sorted(k for k, v in r.credentials.items() if v),
            ))  # fmt: skip
            done.connections_saved.append(entry.client_id)
        if problems:
            raise ProvisioningError(f"{len(problems)} problem(s); nothing was imported", problems)
        return done

    return await provisioning.db.run(work)
