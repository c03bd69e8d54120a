"""Uni Economy's records in bulk, for reconciliation: OData ``top``/``skip`` pages, and after an anchor
``filter=UpdatedAt gt '…' or CreatedAt gt '…'`` (a record never edited has no UpdatedAt).

Records are expanded as ``fetch`` expands them, so ``to_cw`` maps a listed record as a fetched one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from contracts import Entity
from providers.errors import MappingError
from providers.listing import Listed, ListedPage, Paging, latest, parse_time, parse_time_or_none
from providers.uni_economy import inbound
from providers.uni_economy.client import UniClient
from providers.uni_economy.mapping import KINDS, invoice_marker, key_filter, odata_literal, whole_number

CATALOGUES = {
    "vat_codes": ("vattypes", "VatCode"),
    "accounts": ("accounts", "AccountNumber"),
    "departments": ("departments", "ID"),
    "currencies": ("currencycodes", "Code"),
}


def listed(value: Mapping[str, Any]) -> Listed:
    version, author = inbound.stamp(value)
    return Listed(
        external_id=str(value.get("ID")),
        value=value,
        version=version,
        author=author,
        changed_at=parse_time_or_none(version),
    )


def changed_after(anchor: str) -> str:
    when = odata_literal(parse_time(anchor).isoformat())
    return f"UpdatedAt gt {when} or CreatedAt gt {when}"


async def _page(client: UniClient, collection: str, params: Mapping[str, str]) -> list[dict[str, Any]]:
    found = await client.request("GET", f"/{collection}", params=params)
    return [v for v in found if isinstance(v, dict)] if isinstance(found, list) else []


async def list_records(
    client: UniClient, entity: Entity, since: str | None, page_size: int
) -> AsyncIterator[ListedPage]:
    params = {"expand": inbound.FETCH_EXPAND[entity], "top": str(page_size)}
    if since:
        params["filter"] = changed_after(since)
    anchor, skip = since, 0
    paging = Paging(f"Uni Economy GET {KINDS[entity].collection}")
    while True:
        page = await _page(client, KINDS[entity].collection, {**params, "skip": str(skip)})
        skip += len(page)
        items = tuple(listed(v) for v in page)
        paging.read(i.external_id for i in items)
        anchor = latest(anchor, *(i.changed_at for i in items))
        yield ListedPage(items, anchor)
        if len(page) < page_size:
            return


async def find_by_key(
    client: UniClient, entity: Entity, cw_id: str | None, number: str | None
) -> Listed | None:
    """An invoice by CW's id (its InternalNote marker), anything else by its number."""
    kind = KINDS[entity]
    if entity is Entity.invoice:
        if cw_id is None:
            return None
        odata = key_filter(kind, invoice_marker(cw_id))
    elif number is None:
        return None
    else:
        try:
            key: str | int = number if entity is Entity.project else whole_number(number, "number")
        except MappingError:
            return None  # not a Uni number: no such record
        odata = key_filter(kind, key)
    params = {"filter": odata, "top": "1", "expand": inbound.FETCH_EXPAND[entity]}
    page = await _page(client, kind.collection, params)
    return listed(page[0]) if page else None


async def catalogue(client: UniClient, name: str) -> frozenset[str]:
    collection, key = CATALOGUES[name]
    keys: set[str] = set()
    skip = 0
    paging = Paging(f"Uni Economy GET {collection}")
    while True:
        page = await _page(client, collection, {"top": "100", "skip": str(skip)})
        keys.update(str(v[key]) for v in page if v.get(key) is not None)
        paging.read(v.get(key) for v in page)
        skip += len(page)
        if len(page) < 100:
            return frozenset(keys)
