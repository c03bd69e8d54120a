"""An ERP's answer is read up to ``MAX_ANSWER_BYTES``: a server streaming for the whole timeout (or
announcing gigabytes) was held in memory whole, and a worker the kernel kills redelivers all it held."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from providers.errors import TransientError
from providers.http import MAX_ANSWER_BYTES, AnswerTooLarge, HttpResponse, send
from providers.visma_net.client import token_subject

CHUNK = b"x" * 65536


async def endless(request: web.Request) -> web.StreamResponse:
    """Chunked, no length: as much as the reader takes (four times the bound at most)."""
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    for _ in range(4 * MAX_ANSWER_BYTES // len(CHUNK)):
        await resp.write(CHUNK)
    return resp


async def announced(request: web.Request) -> web.StreamResponse:
    """Says it will send two bounds' worth; sends a little."""
    resp = web.StreamResponse(headers={"Content-Length": str(2 * MAX_ANSWER_BYTES)})
    await resp.prepare(request)
    await resp.write(CHUNK)
    return resp


async def small(request: web.Request) -> web.Response:
    return web.json_response({"values": ["ok"]})


@pytest.fixture
async def erp() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/endless", endless)
    app.router.add_get("/announced", announced)
    app.router.add_get("/small", small)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("path", ["/endless", "/announced"])
async def test_an_answer_over_the_bound_is_not_read_further_and_is_transient(erp: str, path: str) -> None:
    async with aiohttp.ClientSession() as http:
        with pytest.raises(AnswerTooLarge, match=f"GET {erp}{path}: the answer is over 32 MiB") as refused:
            await send(http, "GET", erp + path)
        assert isinstance(refused.value, TransientError), "a write may have been made: the retry looks first"
        ok = await send(http, "GET", erp + "/small")
    assert ok.status == 200 and ok.json() == {"values": ["ok"]}


def test_an_answer_nested_past_the_interpreters_limit_is_no_json_not_a_recursion_error() -> None:
    deep = HttpResponse(200, {}, b"[" * 100_000 + b"]" * 100_000)
    assert deep.json() is None, "read as no JSON: the caller says what it expected"
    assert HttpResponse(200, {}, b'{"a": [[1]]}').json() == {"a": [[1]]}


def test_a_visma_token_whose_claims_nest_past_recursion_has_no_subject() -> None:
    def token(claims: bytes) -> str:
        return "h." + base64.urlsafe_b64encode(claims).decode().rstrip("=") + ".s"

    assert token_subject(token(b"[" * 100_000 + b"]" * 100_000)) is None
    assert token_subject(token(b'{"sub": "api-client-7"}')) == "api-client-7"
