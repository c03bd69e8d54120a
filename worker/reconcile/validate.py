"""Mapping validation: does a client's connection still fit its ERP?

Every setting that does not parse or is unknown to the provider kind; every setting that names
something the ERP does not have (a VAT code, an account, a department, a project template, a
currency, an employee: the provider's ``references``, checked against its ``catalogue`` reads); and
every VAT rate used by the client's recent invoices in CW without a ``vat_code.<rate>``, each with
the setting to add or fix. ``cwi connections validate``, ``connections set`` and ``import`` show
them; the worker logs them at start and on a schedule (and counts them in a metric).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from functools import partial
from typing import Any, cast

from config_db import clients
from contracts import Entity
from providers import registry
from providers.base import ConnectionSpec
from providers.catalogues import CatalogueProvider, MappingProblem, mapping_problems, unmapped_rates
from providers.errors import ProviderError
from providers.listing import Paging
from providers.settings import SettingsReader, rate_text
from worker.bootstrap import App
from worker.cw.port import CWLister
from worker.messaging.connections import spec_from_stored

RECENT_DAYS = 90
KEY = "validate"


@dataclass(frozen=True, slots=True)
class Validation:
    client_id: str
    kind: str
    problems: tuple[MappingProblem, ...]
    notes: tuple[str, ...] = ()
    """What could not be checked, and why (no CW configured, the ERP unreachable)."""

    def as_json(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "provider": self.kind,
            "problems": [{"setting": p.setting, "message": p.message} for p in self.problems],
            "notes": list(self.notes),
        }


class ValidationError(Exception):
    """The client has no connection (one line)."""


def _named(line: str) -> str:
    """The setting a line of ``setting_problems`` is about."""
    if line.startswith("unknown setting "):
        return line.split()[2]
    return line.removeprefix("setting ").split(":")[0]


async def recent_rates(cw: CWLister, client_id: str, *, days: int = RECENT_DAYS) -> Counter[str]:
    """VAT rates (``rate_text``) of the client's invoices changed in CW in the last ``days``: how many
    invoices use each."""
    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
    rates: Counter[str] = Counter()
    cursor, has_more = None, True
    paging = Paging("CW's Query API (invoice changes)")
    while has_more:
        page = await cw.list_changes(
            client_id, Entity.invoice, changed_since=since, cursor=cursor, first=500, key=KEY
        )
        for item in page.items:
            lines = (item.record or {}).get("lines") or []
            found = set()
            for line in lines if isinstance(lines, list) else []:
                try:
                    found.add(rate_text(Decimal(str(line.get("vat_rate")))))
                except (InvalidOperation, AttributeError):
                    continue
            rates.update(found)
        cursor, has_more = page.next_cursor, page.has_more
        paging.read((item.cw_id for item in page.items), cursor if has_more else None)
    return rates


async def validate_spec(app: App, spec: ConnectionSpec) -> Validation:
    kind = registry.kind(spec.kind)
    problems = [MappingProblem(_named(line), line) for line in kind.setting_problems(spec.settings)]
    if problems:
        return Validation(spec.client_id, spec.kind, tuple(problems))
    settings = SettingsReader.of(spec)
    notes = []
    assert app.http is not None, "open the app with http=True to validate"
    provider = registry.build(spec, app.http)
    if getattr(provider, "references", ()):
        try:
            problems += await mapping_problems(cast(CatalogueProvider, provider), settings, spec.kind)
        except ProviderError as exc:
            notes.append(f"the ERP's catalogues could not be read: {exc}")
    if any(s.name == "vat_code.<rate>" for s in kind.settings.settings):
        cw = app.cw()
        if cw is None:
            notes.append(
                "recent invoices' VAT rates not checked: CW's Query API is not configured (CWI_CW_*)"
            )
        else:
            try:
                problems += unmapped_rates(settings, await recent_rates(cw, spec.client_id))
            except ProviderError as exc:
                notes.append(f"recent invoices' VAT rates not checked: CW's listing failed: {exc}")
    return Validation(spec.client_id, spec.kind, tuple(problems), tuple(notes))


async def validate_client(app: App, client_id: str, settings: Mapping[str, str] | None = None) -> Validation:
    """The client's connection checked against its ERP, with ``settings`` instead of its own if given."""
    stored = await app.db.run(partial(clients.get_connection, client_id=client_id))
    if stored is None:
        raise ValidationError(f"client {client_id!r} has no connection: add one with `cwi connections set`")
    spec = spec_from_stored(stored, app.settings.secret)
    if settings is not None:
        spec = replace(spec, settings=dict(settings))
    return await validate_spec(app, spec)
