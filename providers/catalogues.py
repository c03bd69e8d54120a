"""Does a connection's mapping still fit its ERP? Settings that name something in the ERP (a VAT
code, an account, a department, a project template, a currency, an employee) checked against what
the ERP has.

Each vendor provider declares its ``references`` (which setting names which catalogue) and reads a
catalogue's keys with ``catalogue(name)``; ``mapping_problems`` does the rest, the same for all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Protocol

from providers.settings import VAT_PREFIX, SettingsReader, rate_text

SHOWN_KNOWN = 8
"""How many of the ERP's keys a problem lists, to help choose the right one."""


@dataclass(frozen=True, slots=True)
class Reference:
    """Setting ``setting`` (``vat_code.<rate>``: each VAT rate's setting) names a key of ``catalogue``."""

    setting: str
    catalogue: str
    what: str
    """The ERP's word for it, as an operator finds it there ("vatType id")."""

    def applies_to(self, name: str) -> bool:
        if self.setting.endswith(".<rate>"):
            return name.startswith(VAT_PREFIX)
        return name == self.setting


class CatalogueProvider(Protocol):
    references: ClassVar[tuple[Reference, ...]]

    async def catalogue(self, name: str) -> frozenset[str]:
        """The keys the ERP has in catalogue ``name`` (one of this provider's ``references``)."""
        ...


@dataclass(frozen=True, slots=True)
class MappingProblem:
    setting: str
    message: str


async def mapping_problems(
    provider: CatalogueProvider, settings: SettingsReader, erp: str
) -> list[MappingProblem]:
    """One problem per setting that names something the ERP does not have, with the fix."""
    found: dict[str, frozenset[str]] = {}
    problems = []
    for name, value in sorted(settings.raw.items()):
        reference = next((r for r in provider.references if r.applies_to(name)), None)
        if reference is None or not value:
            continue
        if reference.catalogue not in found:
            found[reference.catalogue] = await provider.catalogue(reference.catalogue)
        known = found[reference.catalogue]
        if value.strip() in known:
            continue
        examples = ", ".join(sorted(known)[:SHOWN_KNOWN]) or "none"
        more = ", …" if len(known) > SHOWN_KNOWN else ""
        problems.append(
            MappingProblem(
                name,
                f"setting {name}={value}: {erp} has no {reference.what} {value} (it has {examples}{more}) "
                f"— fix it with `{settings.command(name)}`",
            )
        )
    return problems


def unmapped_rates(settings: SettingsReader, rates: Mapping[str, int]) -> list[MappingProblem]:
    """One problem per VAT rate (``rate_text`` → invoices using it) without a ``vat_code.<rate>``."""
    codes = settings.vat_codes()
    problems = []
    for rate, count in sorted(rates.items()):
        name = f"{VAT_PREFIX}{rate}"
        if any(rate_text(known) == rate for known in codes):
            continue
        problems.append(
            MappingProblem(
                name,
                f"VAT rate {rate}% is used by {count} recent invoice(s) and has no mapping — add setting "
                f"{name} ({settings.command(name)})",
            )
        )
    return problems
