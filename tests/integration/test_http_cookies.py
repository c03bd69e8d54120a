"""The worker's HTTP sessions keep no cookies: one session serves every client (and the publisher's
every subscriber), so a cookie set for one would be sent with the others' requests to that host."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from worker.bootstrap import http_session
from worker.publisher.sending import Sender
from worker.publisher.settings import PublisherSettings
from worker.settings import load_settings


@pytest.fixture
async def cookie_setter() -> AsyncIterator[tuple[str, list[str | None]]]:
    """A server that sets a session cookie on every answer and records each request's Cookie header."""
    seen: list[str | None] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Cookie"))
        response = web.json_response({"ok": True})
        response.set_cookie("session", f"tenant-{len(seen)}", path="/")
        return response

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        # A host name, not an address: a cookie jar keeps no cookie from an IP address.
        yield f"http://localhost:{runner.addresses[0][1]}", seen
    finally:
        await runner.cleanup()


async def test_the_workers_session_sends_no_cookie_one_client_was_given(
    cookie_setter: tuple[str, list[str | None]],
) -> None:
    url, seen = cookie_setter
    async with http_session(load_settings()) as http:
        for client in ("acme", "globex"):
            async with http.put(f"{url}/customers/{client}", json={}) as response:
                assert response.status == 200
                assert response.cookies["session"].value  # the server did set one
    assert seen == [None, None]


async def test_the_publishers_session_sends_no_cookie_one_subscriber_was_given(
    cookie_setter: tuple[str, list[str | None]],
) -> None:
    url, seen = cookie_setter
    sender = Sender(PublisherSettings(allow_private=True, allow_http=True))
    try:
        for n in range(2):
            attempt = await sender.send(f"{url}/hook/{n}", f"msg_{n}", "{}", ["whsec_" + "QUJD" * 8])
            assert attempt.status == 200
    finally:
        await sender.close()
    assert seen == [None, None]
