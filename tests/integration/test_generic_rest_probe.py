"""The generic REST provider's probe (``GET {base}/v1/_ping``): identity, connection test, and 404s
told apart: "already gone" where the interface is known to be, "wrong place" everywhere else."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from contracts import Action, Customer, Entity
from providers.base import ConnectionSpec, OutboundChange
from providers.errors import AuthenticationFailed, ProviderRejected, TransientError
from providers.generic_rest import GenericRestProvider
from providers.generic_rest.sandbox import SandboxServer

TOKEN = "probe-token"
CUSTOMER = Customer(id="c-1", number="1001", name="Acme AS")


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxServer]:
    async with SandboxServer(token=TOKEN, api_user="cw-integration") as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def provider(http: aiohttp.ClientSession, base_url: str, **settings: str) -> GenericRestProvider:
    spec = ConnectionSpec("acme", "generic_rest", base_url, settings=settings, credentials={"token": TOKEN})
    return GenericRestProvider(spec, http)


def delete(cw_id: str = "c-1", key: str = "env-del") -> OutboundChange:
    return OutboundChange(key, Entity.customer, Action.deleted, cw_id, None)


async def serve(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


@pytest.fixture
async def elsewhere() -> AsyncIterator[str]:
    """A web server that is not the interface: every path is an HTML 404."""

    async def not_here(request: web.Request) -> web.Response:
        return web.Response(status=404, text="<h1>Not Found</h1>", content_type="text/html")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", not_here)
    async for url in serve(app):
        yield url


async def test_identity_is_the_tokens_subject_asked_once(
    http: aiohttp.ClientSession, sandbox: SandboxServer
) -> None:
    erp = provider(http, sandbox.base_url)
    assert await erp.identity() == "cw-integration"
    assert await erp.identity() == "cw-integration"
    assert (await sandbox.stats())["requests"] == 1


async def test_the_api_user_setting_overrides_the_probe(
    http: aiohttp.ClientSession, sandbox: SandboxServer
) -> None:
    assert await provider(http, sandbox.base_url, api_user="someone").identity() == "someone"
    assert (await sandbox.stats())["requests"] == 0


async def test_check_names_the_subject(http: aiohttp.ClientSession, sandbox: SandboxServer) -> None:
    assert await provider(http, sandbox.base_url).check() == (
        f"generic_rest at {sandbox.base_url}: authenticated as cw-integration (interface v1)"
    )


async def test_check_at_a_wrong_base_path_fails_naming_the_url(
    http: aiohttp.ClientSession, sandbox: SandboxServer
) -> None:
    with pytest.raises(ProviderRejected) as caught:
        await provider(http, sandbox.base_url + "/cw").check()
    assert str(caught.value).startswith(f"404 at {sandbox.base_url}/cw/v1/_ping: is the base URL right?")


async def test_check_at_a_server_that_is_not_the_interface_fails(
    http: aiohttp.ClientSession, elsewhere: str
) -> None:
    with pytest.raises(ProviderRejected, match=r"404 at .*/v1/_ping: is the base URL right\?"):
        await provider(http, elsewhere).check()


async def test_check_with_a_wrong_token_fails_authentication(
    http: aiohttp.ClientSession, sandbox: SandboxServer
) -> None:
    spec = ConnectionSpec("acme", "generic_rest", sandbox.base_url, credentials={"token": "wrong"})
    with pytest.raises(AuthenticationFailed, match="HTTP 401"):
        await GenericRestProvider(spec, http).check()


async def test_a_200_that_is_not_the_probe_fails_the_check(http: aiohttp.ClientSession) -> None:
    async def html(request: web.Request) -> web.Response:
        return web.Response(text="<html>welcome</html>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/v1/_ping", html)
    async for url in serve(app):
        with pytest.raises(ProviderRejected, match="not as the generic REST interface v1"):
            await provider(http, url).check()


async def test_a_delete_of_a_missing_record_is_deleted_where_the_interface_is(
    http: aiohttp.ClientSession, sandbox: SandboxServer
) -> None:
    result = await provider(http, sandbox.base_url).push(delete("never-there"))
    assert result.outcome == "deleted"


async def test_a_delete_at_a_wrong_base_path_is_an_error_never_deleted(
    http: aiohttp.ClientSession, sandbox: SandboxServer, elsewhere: str
) -> None:
    for base_url in (sandbox.base_url + "/cw", elsewhere):
        with pytest.raises(ProviderRejected, match=r"404 at .*/v1/_ping: is the base URL right\?"):
            await provider(http, base_url).push(delete())


async def test_a_put_answered_404_names_the_wrong_place(http: aiohttp.ClientSession, elsewhere: str) -> None:
    change = OutboundChange("env-1", Entity.customer, Action.created, "c-1", CUSTOMER)
    with pytest.raises(ProviderRejected, match=r"404 at .*/v1/customer/c-1: is the base URL right\?"):
        await provider(http, elsewhere).push(change)


async def test_a_key_in_flight_409_is_transient(http: aiohttp.ClientSession, sandbox: SandboxServer) -> None:
    async with http.post(f"{sandbox.base_url}/_sandbox/fail-next", json={"status": 409}) as resp:
        assert resp.status == 200
    change = OutboundChange("env-1", Entity.customer, Action.created, "c-1", CUSTOMER)
    with pytest.raises(TransientError, match="HTTP 409"):
        await provider(http, sandbox.base_url).push(change)


async def test_a_missing_reference_422_is_transient_other_rules_are_not(http: aiohttp.ClientSession) -> None:
    rules = iter(["reference", "locked"])

    async def refuse(request: web.Request) -> web.Response:
        rule = next(rules)
        return web.json_response({"error": f"customer_id: rule {rule}", "rule": rule}, status=422)

    app = web.Application()
    app.router.add_put("/v1/customer/{cw_id}", refuse)
    change = OutboundChange("env-1", Entity.customer, Action.created, "c-1", CUSTOMER)
    async for url in serve(app):
        with pytest.raises(TransientError, match="rule reference"):
            await provider(http, url).push(change)
        with pytest.raises(ProviderRejected, match="rule locked"):
            await provider(http, url).push(change)
