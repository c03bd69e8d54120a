"""Reading both sides for reconciliation: CW through its Query API's listing, the ERP through its
provider's listing, page by page, each ERP request at the run's own bounded rate.

The ERP's records are mapped to CW fields on the way (the provider's ``to_cw``, the inbound path's
mapping), their references (a project's customer) resolved through the record links.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from contracts import Entity
from providers.base import CWDraft
from providers.errors import PermanentError
from providers.http import ConnectionThrottle
from providers.listing import Listed, ListedPage, ListingProvider, Paging
from worker.cw.port import CWApi, CWLister
from worker.reconcile.compare import CWState

CW_PAGE = 500
ERP_PAGE = 500
"""Records per ERP page: the generic interface's most; every vendor takes as many."""
KEY_PREFIX = "reconcile"


class ReconcilingProvider(ListingProvider, Protocol):
    def to_cw(self, entity: Entity, value: Mapping[str, Any]) -> CWDraft: ...


class CWReader(CWApi, CWLister, Protocol):
    pass


Progress = Callable[[str, int], None]
"""``(side, records read)`` after each page: ``cw`` or ``erp``."""


@dataclass(frozen=True, slots=True)
class ErpSide:
    """One ERP record as read, with its CW fields when it maps (else ``error`` says why not)."""

    listed: Listed
    fields: dict[str, Any] | None
    number: str | None
    error: str | None = None

    @property
    def cw_id(self) -> str | None:
        return self.listed.cw_id


@dataclass
class Budget:
    """The run's ERP requests: counted, and paced by a throttle of their own (a share of the
    connection's cap), so that live traffic on the same connection keeps the rest."""

    throttle: ConnectionThrottle
    used: int = 0

    async def spend(self) -> None:
        await self.throttle.acquire()
        self.used += 1


async def paced(pages: AsyncIterator[ListedPage], budget: Budget) -> AsyncIterator[ListedPage]:
    """The provider's pages, one request each, each after the budget allows it. (Asking for the page
    after the last one sends nothing: that slot of the budget is left unused.)"""
    iterator = aiter(pages)
    while True:
        await budget.throttle.acquire()
        try:
            page = await anext(iterator)
        except StopAsyncIteration:
            return
        budget.used += 1
        yield page


Resolve = Callable[[Entity, str], str | None]
"""A referenced record's CW id from its ERP id (through the links), None when not linked."""


def erp_side(provider: ReconcilingProvider, entity: Entity, listed: Listed, resolve: Resolve) -> ErpSide:
    if listed.value is None:
        return ErpSide(listed, None, None)
    try:
        draft = provider.to_cw(entity, listed.value)
    except PermanentError as exc:
        return ErpSide(listed, None, None, str(exc))
    fields = dict(draft.fields)
    for reference in draft.references:
        cw_id = resolve(reference.entity, reference.external_id)
        if cw_id is not None:
            fields[reference.field] = cw_id
    number = fields.get("number")
    return ErpSide(listed, fields, number if isinstance(number, str) else None)


async def read_erp(
    provider: ReconcilingProvider,
    entity: Entity,
    since: str | None,
    budget: Budget,
    resolve: Resolve,
    progress: Progress,
    *,
    page_size: int = ERP_PAGE,
) -> tuple[list[ErpSide], str | None]:
    """Every record the listing returns, mapped; and the anchor after its last page."""
    found: list[ErpSide] = []
    anchor = since
    async for page in paced(provider.list_records(entity, since, page_size=page_size), budget):
        found.extend(erp_side(provider, entity, item, resolve) for item in page.items)
        anchor = page.anchor or anchor
        progress("erp", len(page.items))
    return found, anchor


async def read_cw(
    cw: CWReader,
    client_id: str,
    entity: Entity,
    *,
    cursor: str | None,
    since: dt.datetime | None,
    progress: Progress,
) -> tuple[dict[str, CWState], str | None]:
    """Every CW record the listing returns (deleted ones with ``record`` None), and its last cursor."""
    found: dict[str, CWState] = {}
    has_more = True
    paging = Paging(f"CW's Query API ({entity.value} changes)")
    while has_more:
        page = await cw.list_changes(
            client_id, entity, changed_since=since, cursor=cursor, first=CW_PAGE, key=KEY_PREFIX
        )
        for item in page.items:
            found[item.cw_id] = CWState(item.cw_id, item.sequence, item.record)
        cursor, has_more = page.next_cursor or cursor, page.has_more
        paging.read((item.cw_id for item in page.items), cursor if has_more else None)
        progress("cw", len(page.items))
    return found, cursor


async def read_cw_one(cw: CWReader, client_id: str, entity: Entity, cw_id: str) -> CWState:
    record = await cw.fetch(client_id, entity, cw_id, key=f"{KEY_PREFIX}:{cw_id}")
    return CWState(cw_id, None, record)


async def read_erp_one(
    provider: ReconcilingProvider,
    entity: Entity,
    budget: Budget,
    resolve: Resolve,
    *,
    external_id: str | None,
    cw_id: str | None,
    number: str | None,
) -> ErpSide | None:
    await budget.spend()
    found = await provider.read_record(entity, external_id=external_id, cw_id=cw_id, number=number)
    return None if found is None else erp_side(provider, entity, found, resolve)
