"""An ERP whose paging never ends (a cursor it gave before, an offset or page number it ignores)
made a reconciliation list for ever, holding every page: now the listing stops at the first sign
with ProviderRejected naming the request (``providers.listing.Paging``, used by every provider)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from contracts import Entity
from providers.base import ConnectionSpec
from providers.errors import ProviderRejected
from providers.generic_rest.provider import GenericRestProvider
from providers.listing import MAX_PAGES, Paging
from worker.cw.port import CWChange, CWPage
from worker.reconcile.sides import read_cw

Page = Callable[[str | None], dict[str, Any]]


def _item(n: int) -> dict[str, Any]:
    return {"external_id": f"E{n}", "version": "1", "data": {"number": str(n), "name": f"N{n}"}}


def cycling_cursors(cursor: str | None) -> dict[str, Any]:
    """Pages of their own, but the cursors go a → b → a → …"""
    n = {"a": 1, "b": 2}.get(cursor or "", 0)
    return {"items": [_item(n)], "next_cursor": "b" if cursor == "a" else "a", "has_more": True}


counter = itertools.count()


def ignored_cursor(cursor: str | None) -> dict[str, Any]:
    """A new cursor each time, and the same first page whatever the cursor says."""
    return {"items": [_item(1), _item(2)], "next_cursor": f"c{next(counter)}", "has_more": True}


@pytest.fixture
async def endless_erp(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, list[str]]]:
    page: Page = request.param
    asked: list[str] = []

    async def customers(req: web.Request) -> web.Response:
        asked.append(req.query_string)
        return web.json_response(page(req.query.get("cursor")))

    app = web.Application()
    app.router.add_get("/v1/customer", customers)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", asked
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("endless_erp", "said"),
    [(cycling_cursors, "the cursor 'a' came a second time"), (ignored_cursor, "page 2 repeats page 1")],
    indirect=["endless_erp"],
    ids=["cursor loop", "cursor ignored"],
)
async def test_a_listing_whose_paging_never_ends_stops_with_the_reason(
    endless_erp: tuple[str, list[str]], said: str
) -> None:
    url, asked = endless_erp
    async with aiohttp.ClientSession() as http:
        provider = GenericRestProvider(ConnectionSpec("acme", "generic_rest", url, {}, {"token": "t"}), http)
        with pytest.raises(ProviderRejected, match=said) as refused:
            async for _page in provider.list_records(Entity.customer, None, page_size=2):
                pass
    assert len(asked) <= 3, asked
    assert str(refused.value).startswith("generic_rest GET /v1/customer: "), "the request named"


def test_paging_allows_pages_that_differ_and_a_last_empty_one_and_stops_at_the_cap() -> None:
    paging = Paging("GET /x")
    paging.read(["1", "2"])
    paging.read(["2", "3"])  # shifted by one (a record added meanwhile): not the same page
    paging.read([])
    paging.read([])  # empty pages are not "the same page"
    with pytest.raises(ProviderRejected, match=r"GET /x: page 6 repeats page 5"):
        paging.read(["9"])
        paging.read(["9"])
    capped = Paging("GET /y")
    with pytest.raises(ProviderRejected, match=f"more than {MAX_PAGES:,} pages"):
        for n in range(MAX_PAGES + 1):
            capped.read([str(n)])


class LoopingCW:
    """CW's Query API answering "more" without a next cursor: the same cursor again, for ever."""

    def __init__(self) -> None:
        self.asked = 0

    async def list_changes(self, client_id: str, entity: Entity, **_: Any) -> CWPage:
        self.asked += 1
        return CWPage((CWChange(f"c{self.asked}", self.asked, None, {"n": 1}),), "cur-1", True)


async def test_cws_own_listing_that_never_ends_stops_too() -> None:
    cw = LoopingCW()
    with pytest.raises(
        ProviderRejected, match=r"CW's Query API \(customer changes\): the cursor 'cur-1' came a second time"
    ):
        await read_cw(cw, "acme", Entity.customer, cursor=None, since=None, progress=lambda *_: None)  # type: ignore[arg-type]
    assert cw.asked == 2
