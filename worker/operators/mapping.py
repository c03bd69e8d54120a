"""The mapping settings of a connection as a form: every setting its provider kind reads, with
what the ERP offers for it where the provider can read that (``OffersOptions``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import aiohttp

from config_db.clients import StoredConnection
from providers import registry
from providers.errors import ProviderError
from providers.settings import Setting
from worker.messaging.connections import spec_from_stored

FAMILY = ".<rate>"
#: settings that are mapping (what CW's values become in the ERP), shown first.
MAPPING_PREFIXES = (
    "vat_code", "revenue_account", "department", "project", "customer_class", "supplier_class", "branch",
    "currency", "company",
)  # fmt: skip


@runtime_checkable
class OffersOptions(Protocol):
    """A provider that can list the ERP's values for a setting (VAT codes, accounts, dimensions)."""

    async def setting_options(self, name: str) -> list[tuple[str, str]]:
        """``(value, label)`` pairs the ERP offers for ``name`` (a family: its base name)."""
        ...


@dataclass(slots=True)
class Field:
    name: str
    type: str
    help: str
    value: str = ""
    family: bool = False
    options: list[tuple[str, str]] = field(default_factory=list)
    mapping: bool = False


def fields(kind: str, settings: Mapping[str, str]) -> list[Field]:
    """One field per declared setting (a family: one per stored member, and one blank to add)."""
    out: list[Field] = []
    for setting in registry.kind(kind).settings.settings:
        out.extend(_fields_of(setting, settings))
    out.sort(key=lambda f: (not f.mapping, f.name))
    return out


def _fields_of(setting: Setting, settings: Mapping[str, str]) -> list[Field]:
    is_mapping = setting.name.startswith(MAPPING_PREFIXES)
    if not setting.name.endswith(FAMILY):
        value = settings.get(setting.name, "")
        return [Field(setting.name, setting.type, setting.help, value, mapping=is_mapping)]
    base = setting.name.removesuffix(FAMILY)
    members = sorted(n for n in settings if n.startswith(base + "."))
    found = [Field(n, setting.type, setting.help, settings[n], family=True, mapping=True) for n in members]
    return [*found, Field(setting.name, setting.type, setting.help, "", family=True, mapping=True)]


async def with_options(stored: StoredConnection, secret: str | None, found: list[Field]) -> str | None:
    """Fill each field's options from the ERP; the note says why there are none (None: filled)."""
    try:
        spec = spec_from_stored(stored, secret)
        async with aiohttp.ClientSession() as http:
            provider = registry.build(spec, http)
            if not isinstance(provider, OffersOptions):
                return f"the {stored.kind} provider cannot list the ERP's values yet: type them"
            for f in found:
                f.options = await provider.setting_options(f.name.split(".")[0] if f.family else f.name)
    except (ProviderError, aiohttp.ClientError, TimeoutError) as exc:
        return f"could not read the ERP's values: {exc}"
    return None
