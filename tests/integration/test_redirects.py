"""An ERP's redirect is not followed (``providers.http.send``): followed, a redirect to another host
took the vendor's key headers with it (aiohttp drops only Authorization), and a POST redirected
with 302 came back as the answer of a GET, so a create that was never made looked made."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from providers.errors import TransientError
from providers.http import send

KEYS = {"Authorization": "Bearer t0ken", "CompanyKey": "c0mpany-key", "X-API-Key": "ap1-key"}


@dataclass
class Servers:
    erp: str
    elsewhere: str
    reached: list[dict[str, str]] = field(default_factory=list)


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


@pytest.fixture
async def servers() -> AsyncIterator[Servers]:
    reached: list[dict[str, str]] = []

    async def elsewhere(request: web.Request) -> web.Response:
        reached.append(dict(request.headers))
        return web.json_response([{"id": 1}])

    other = web.Application()
    other.router.add_route("*", "/{tail:.*}", elsewhere)
    other_runner, other_url = await _serve(other)

    async def moved(request: web.Request) -> web.Response:
        status = int(request.query.get("status", "302"))
        return web.Response(status=status, headers={"Location": other_url.replace("127.0.0.1", "localhost")})

    erp = web.Application()
    erp.router.add_route("*", "/{tail:.*}", moved)
    erp_runner, erp_url = await _serve(erp)
    try:
        yield Servers(erp_url, other_url, reached)
    finally:
        await erp_runner.cleanup()
        await other_runner.cleanup()


@pytest.mark.parametrize(("method", "status"), [("POST", 302), ("PUT", 307), ("GET", 301), ("DELETE", 308)])
async def test_a_redirect_is_not_followed_and_says_where_it_leads(
    servers: Servers, method: str, status: int
) -> None:
    async with aiohttp.ClientSession() as http:
        with pytest.raises(TransientError, match=f"HTTP {status}, a redirect to http://localhost:") as caught:
            await send(
                http, method, f"{servers.erp}/customers?status={status}", headers=KEYS, json_body={"a": 1}
            )
    assert "not followed (is the base URL right?)" in str(caught.value)
    assert servers.reached == [], "the keys went to the other host"
