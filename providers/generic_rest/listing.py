"""The generic REST interface's records in bulk, for reconciliation: ``GET {base}/v1/{entity}`` with
``changed_since`` or the ``cursor`` of an earlier page (see *Listing changes* of the interface).

An anchor is the cursor after the last page read (``c:<cursor>``: the interface's own change token),
or a time (``t:<ISO>``) when a run is asked to start at one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Mapping
from typing import Any

from contracts import Entity
from providers.errors import ProviderRejected
from providers.generic_rest.client import GenericRestClient
from providers.listing import Listed, ListedPage, Paging, parse_time_or_none

MAX_LIMIT = 500
CURSOR, TIME = "c:", "t:"
READ_KEY = "cwi-reconcile"
"""A GET needs no Idempotency-Key (one sent is ignored); the client sends one on every request."""


def anchor_at(when: dt.datetime) -> str:
    return TIME + when.astimezone(dt.UTC).isoformat()


def _params(since: str | None, limit: int) -> dict[str, str]:
    params = {"limit": str(min(limit, MAX_LIMIT))}
    if since is None:
        return params
    if since.startswith(CURSOR):
        return params | {"cursor": since.removeprefix(CURSOR)}
    return params | {"changed_since": since.removeprefix(TIME)}


def listed(item: Mapping[str, Any]) -> Listed:
    data = item.get("data")
    cw_id = item.get("cw_id")
    return Listed(
        external_id=str(item["external_id"]),
        value=None if item.get("deleted") or not isinstance(data, dict) else data,
        version=str(item["version"]),
        changed_at=parse_time_or_none(item.get("changed_at")),
        cw_id=cw_id if isinstance(cw_id, str) else None,
    )


async def list_records(
    client: GenericRestClient, entity: Entity, since: str | None, page_size: int
) -> AsyncIterator[ListedPage]:
    params = _params(since, page_size)
    paging = Paging(f"generic_rest GET /v1/{entity.value}")
    while True:
        resp = await client.list_page(entity, params)
        body = resp.json()
        if not isinstance(body, dict) or not isinstance(body.get("items"), list):
            raise ProviderRejected(f"generic_rest GET /v1/{entity.value}: not a page: {resp.text(200)}")
        items = tuple(listed(i) for i in body["items"] if isinstance(i, dict))
        next_cursor = body.get("next_cursor")
        anchor = CURSOR + next_cursor if isinstance(next_cursor, str) and next_cursor else since
        yield ListedPage(items, anchor)
        if body.get("has_more") is not True or anchor == since:
            return
        paging.read((i.external_id for i in items), str(next_cursor))
        params = {"limit": params["limit"], "cursor": str(next_cursor)}
        since = anchor


async def read_by_cw_id(client: GenericRestClient, entity: Entity, cw_id: str) -> Listed | None:
    resp = await client.request("GET", entity, cw_id, READ_KEY)
    if resp.status == 404:
        return None
    body = resp.json()
    if not isinstance(body, dict) or "external_id" not in body:
        raise ProviderRejected(f"generic_rest GET {entity.value}/{cw_id}: not a record: {resp.text(200)}")
    return listed({**body, "cw_id": cw_id, "deleted": False})
