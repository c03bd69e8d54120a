"""Tripletex's records in bulk, for reconciliation: ``from``/``count`` pages, ``changedSince`` where the
spec offers it (customers and suppliers). Projects and invoices have no change filter in the spec:
they are read in full and filtered here by their latest change's time; invoices, whose search needs
a date range, within ``INVOICE_LOOKUP_WINDOW`` before the anchor.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Mapping
from typing import Any

from contracts import Entity
from providers.listing import Listed, ListedPage, Paging, latest, parse_time, parse_time_or_none
from providers.tripletex import mapping
from providers.tripletex.client import TripletexClient, unwrap

PATHS = {
    Entity.customer: "/customer",
    Entity.supplier: "/supplier",
    Entity.project: "/project",
    Entity.invoice: "/invoice",
}
KEY_PARAMS = {
    Entity.customer: "customerAccountNumber",
    Entity.supplier: "supplierNumber",
    Entity.project: "number",
}
CHANGED_SINCE = frozenset({Entity.customer, Entity.supplier})
"""The entities whose list endpoint takes ``changedSince`` (the spec's)."""
EARLIEST_INVOICE = dt.date(2000, 1, 1)


def listed(value: Mapping[str, Any]) -> Listed:
    """A Tripletex object (as ``FETCH_FIELDS`` asks for it) as a listed record."""
    version = value.get("version")
    return Listed(
        external_id=str(value["id"]),
        value=value,
        version=None if version is None else str(version),
        author=mapping.last_author(value),
        changed_at=parse_time_or_none(mapping.last_change_time(value)),
    )


def _params(entity: Entity, since: str | None, today: dt.date) -> dict[str, str]:
    params = {"fields": mapping.FETCH_FIELDS[entity.value]}
    if since and entity in CHANGED_SINCE:
        params["changedSince"] = since
    if entity is Entity.invoice:
        start = EARLIEST_INVOICE
        if since:
            start = parse_time(since).date() - mapping.INVOICE_LOOKUP_WINDOW
        params["invoiceDateFrom"] = start.isoformat()
        params["invoiceDateTo"] = (today + mapping.INVOICE_LOOKUP_WINDOW).isoformat()
    return params


async def list_records(
    client: TripletexClient, entity: Entity, since: str | None, page_size: int
) -> AsyncIterator[ListedPage]:
    path = PATHS[entity]
    params = _params(entity, since, client.today())
    cutoff = parse_time(since) if since and entity not in CHANGED_SINCE else None
    anchor, start = since, 0
    paging = Paging(f"Tripletex GET {path}")
    while True:
        page_params = {**params, "from": str(start), "count": str(page_size)}
        resp = await client.call("GET", path, params=page_params)
        page = [v for v in unwrap(resp, "values", f"GET {path}") if isinstance(v, dict)]
        paging.read(v.get("id") for v in page)
        start += len(page)
        items = tuple(listed(v) for v in page)
        if cutoff is not None:
            items = tuple(i for i in items if i.changed_at is None or i.changed_at > cutoff)
        anchor = latest(anchor, *(i.changed_at for i in items))
        yield ListedPage(items, anchor)
        if len(page) < page_size:
            return


async def find_by_number(client: TripletexClient, entity: Entity, number: str) -> Listed | None:
    """A customer, supplier or project by its number (invoices cannot be searched by CW's number)."""
    key = KEY_PARAMS.get(entity)
    if key is None:
        return None
    params = {key: number, "fields": mapping.FETCH_FIELDS[entity.value], "from": "0", "count": "1"}
    resp = await client.call("GET", PATHS[entity], params=params)
    found = [v for v in unwrap(resp, "values", f"GET {PATHS[entity]}") if isinstance(v, dict)]
    return listed(found[0]) if found else None
