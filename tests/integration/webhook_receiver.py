"""A third party's webhook endpoint for the publisher's tests: it verifies every call with the
``standardwebhooks`` library and answers as it is told to (succeed, fail, throttle, time out,
say 410 Gone, redirect), recording what it received.

``behave(call)`` decides the answer of each call: a status, ``"slow"`` (answers after
``slow_s``, longer than the publisher waits), or ``"redirect"``. It can run in the test's event
loop (``async with``) or in a thread of its own (``threaded``, for tests that block on a process).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError


@dataclass(frozen=True)
class Call:
    webhook_id: str
    body: dict[str, Any]
    verified_by: tuple[int, ...]
    """Which of the receiver's secrets (their indexes) verify the call's signature."""
    signatures: int
    answered: Any

    @property
    def event_id(self) -> str:
        return str(self.body["event_id"])

    @property
    def record(self) -> str:
        return f"{self.body['type'].partition('.')[0]}/{self.body['record_id']}"


Behaviour = Callable[["Receiver", str, int], Any]
"""``(receiver, webhook_id, n-th call of that id) → 200 | 500 | 429 | 410 | "slow" | "redirect"``."""


def always(answer: Any) -> Behaviour:
    return lambda receiver, webhook_id, n: answer


@dataclass
class Receiver:
    secrets: list[str] = field(default_factory=list)
    behave: Behaviour = field(default_factory=lambda: always(200))
    slow_s: float = 1.0
    calls: list[Call] = field(default_factory=list)
    stray: list[str] = field(default_factory=list)
    """Paths called that are not the endpoint (a followed redirect would show here)."""
    port: int = 0
    in_flight: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def delivered(self) -> list[Call]:
        """Calls answered 2xx."""
        return [c for c in self.calls if isinstance(c.answered, int) and 200 <= c.answered < 300]

    async def _endpoint(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        headers = dict(request.headers)
        verified = []
        for index, secret in enumerate(self.secrets):
            try:
                Webhook(secret).verify(raw, headers)
                verified.append(index)
            except WebhookVerificationError:
                pass
        if not verified:
            return web.json_response({"error": "bad signature"}, status=401)
        webhook_id = headers["webhook-id"]
        n = sum(1 for c in self.calls if c.webhook_id == webhook_id) + 1
        answer = self.behave(self, webhook_id, n)
        signatures = len(headers["webhook-signature"].split(" "))
        self.calls.append(Call(webhook_id, json.loads(raw), tuple(verified), signatures, answer))
        if answer == "slow":
            self.in_flight += 1
            try:
                await asyncio.sleep(self.slow_s)
            finally:
                self.in_flight -= 1
            return web.Response(status=200)
        if answer == "redirect":
            raise web.HTTPFound("/elsewhere")
        headers_out = {"Retry-After": "1"} if answer == 429 else {}
        return web.Response(status=int(answer), text=f"answer {answer} secret-ish", headers=headers_out)

    async def _elsewhere(self, request: web.Request) -> web.Response:
        self.stray.append(request.path)
        return web.Response(status=200)

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hooks", self._endpoint)
        app.router.add_route("*", "/elsewhere", self._elsewhere)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


@contextmanager
def threaded(receiver: Receiver) -> Iterator[Receiver]:
    """The receiver served by a thread with its own event loop."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop = asyncio.Event()

    async def serve() -> None:
        async with receiver:
            started.set()
            await stop.wait()

    thread = threading.Thread(target=lambda: loop.run_until_complete(serve()), daemon=True)
    thread.start()
    assert started.wait(10), "the receiver did not start"
    try:
        yield receiver
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()
