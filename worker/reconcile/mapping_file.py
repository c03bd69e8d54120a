"""A connection's mapping as a file, to carry from one client to another.

``export``: the provider kind and its settings, never credentials, and without the settings that
name something in one ERP company only (``Setting.company``: the tenant, an employee, a department)
unless asked for. ``import``: the file's settings replace the target's mapping settings, its company
settings stay; ``changes`` lists what would change, setting by setting, before anything is applied.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from config_db.clients import StoredConnection
from contracts import jsontext
from providers import registry
from providers.errors import PermanentError

FORMAT = "cwi-mapping/1"


class MappingFileError(ValueError):
    """The file cannot be used; the message says why in one line."""


def _company(kind: str, name: str) -> bool:
    found = registry.kind(kind).settings.find(name)
    return found is not None and found.company


def export(stored: StoredConnection, *, include_ids: bool = False) -> dict[str, Any]:
    """The mapping of a connection (``include_ids``: its company settings and base URL too)."""
    kept = {k: v for k, v in sorted(stored.settings.items()) if include_ids or not _company(stored.kind, k)}
    left_out = sorted(set(stored.settings) - set(kept))
    out: dict[str, Any] = {"format": FORMAT, "provider": stored.kind, "settings": kept}
    # A vendor's API address is the same for every client; a generic REST ERP's is the client's own.
    if include_ids or stored.kind != "generic_rest":
        out["base_url"] = stored.base_url
    if left_out:
        out["left_out"] = left_out
    return out


@dataclass(frozen=True, slots=True)
class MappingFile:
    provider: str
    settings: dict[str, str]
    base_url: str | None


def parse(text: str) -> MappingFile:
    """The file, checked: its format, a known provider kind, settings that kind knows and can read."""
    try:
        raw = jsontext.loads(text)
    except ValueError as exc:
        raise MappingFileError(f"not JSON: {exc}") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise MappingFileError(f'not a mapping file: expected "format": "{FORMAT}" (cwi connections export)')
    provider, settings = raw.get("provider"), raw.get("settings")
    try:
        kind = registry.kind(str(provider))
    except PermanentError as exc:
        raise MappingFileError(str(exc)) from None
    if not isinstance(settings, dict) or not all(isinstance(v, str) for v in settings.values()):
        raise MappingFileError("settings must be an object of names and text values")
    problems = kind.setting_problems(settings)
    if problems:
        raise MappingFileError("; ".join(problems))
    base_url = raw.get("base_url")
    return MappingFile(kind.name, dict(settings), base_url if isinstance(base_url, str) else None)


def merged(target: StoredConnection, file: MappingFile) -> dict[str, str]:
    """The target's settings after the import: its company settings, then the file's."""
    if target.kind != file.provider:
        raise MappingFileError(
            f"the file is a {file.provider} mapping and client {target.client_id}'s connection is "
            f"{target.kind}: set its connection to {file.provider} first (cwi connections set)"
        )
    kept = {k: v for k, v in target.settings.items() if _company(target.kind, k) and k not in file.settings}
    return {**kept, **file.settings}


def changes(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    """``+ name=value``, ``~ name: old → new``, ``- name (was value)``: what an import changes."""
    lines = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        if old is None:
            lines.append(f"+ {name}={new}")
        elif new is None:
            lines.append(f"- {name} (was {old})")
        else:
            lines.append(f"~ {name}: {old} → {new}")
    return lines
