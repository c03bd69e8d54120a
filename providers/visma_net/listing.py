"""Visma.net's records in bulk, for reconciliation: ``pageNumber``/``pageSize`` pages, and
``lastModifiedDateTime`` with the condition ``>`` after an anchor (every list endpoint has both).

Records are keyed as the provider keys them (customer and supplier number, projectID, an invoice's
referenceNumber); a list of invoices may leave their lines out, so those are read one by one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Mapping
from typing import Any

from contracts import Entity
from providers.listing import Listed, ListedPage, Paging, latest, parse_time, parse_time_or_none
from providers.visma_net.client import VismaNetClient, item_path

COLLECTIONS = {
    Entity.customer: "/v1/customer",
    Entity.supplier: "/v1/supplier",
    Entity.project: "/v1/project",
    Entity.invoice: "/v1/customerinvoice",
}
KEYS = {
    Entity.customer: "number",
    Entity.supplier: "number",
    Entity.project: "projectID",
    Entity.invoice: "referenceNumber",
}


def visma_time(anchor: str) -> str:
    """An anchor as Visma's ``lastModifiedDateTime`` parameter wants it: ``yyyy-MM-ddTHH:mm:ss.FFF``
    in UTC, the zone its stamps are in."""
    when = parse_time(anchor).astimezone(dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}"


def listed(entity: Entity, value: Mapping[str, Any]) -> Listed:
    stamp = value.get("lastModifiedDateTime")
    return Listed(
        external_id=str(value.get(KEYS[entity])),
        value=value,
        version=str(stamp) if stamp else None,
        changed_at=parse_time_or_none(stamp),
    )


async def _with_lines(client: VismaNetClient, value: dict[str, Any]) -> dict[str, Any]:
    if "invoiceLines" in value:
        return value
    found = await client.get_json(item_path(COLLECTIONS[Entity.invoice], str(value.get("referenceNumber"))))
    return found if isinstance(found, dict) else value


async def list_records(
    client: VismaNetClient, entity: Entity, since: str | None, page_size: int
) -> AsyncIterator[ListedPage]:
    params = {"pageSize": str(page_size)}
    if entity is Entity.project:
        params["systemTemplate"] = "false"  # templates are not projects CW knows
    if since:
        params |= {"lastModifiedDateTime": visma_time(since), "lastModifiedDateTimeCondition": ">"}
    anchor, number = since, 1
    paging = Paging(f"Visma.net GET {COLLECTIONS[entity]}")
    while True:
        found = await client.get_json(COLLECTIONS[entity], params={**params, "pageNumber": str(number)})
        page = [v for v in found if isinstance(v, dict)] if isinstance(found, list) else []
        if entity is Entity.invoice:
            page = [await _with_lines(client, v) for v in page]
        items = tuple(listed(entity, v) for v in page)
        paging.read(i.external_id for i in items)
        anchor = latest(anchor, *(i.changed_at for i in items))
        yield ListedPage(items, anchor)
        if len(page) < page_size:
            return
        number += 1


async def list_keys(client: VismaNetClient, path: str, key: str, params: Mapping[str, str]) -> frozenset[str]:
    """The ``key`` of every record a list endpoint returns (paged when ``params`` ask for pages)."""
    keys: set[str] = set()
    number = 1
    paging = Paging(f"Visma.net GET {path}")
    while True:
        paged = {**params, "pageNumber": str(number)} if "pageSize" in params else dict(params)
        found = await client.get_json(path, params=paged or None)
        page = [v for v in found if isinstance(v, dict)] if isinstance(found, list) else []
        keys.update(str(v[key]) for v in page if v.get(key) is not None)
        paging.read(v.get(key) for v in page)
        if "pageSize" not in params or len(page) < int(params["pageSize"]):
            return frozenset(keys)
        number += 1
