"""The chaos ERP: the sandbox (the generic REST interface's reference implementation) behind a
middleware that faults about ``fail_rate`` of the interface's requests, in every way a real ERP
and network do, and a record of every value each record received, in order.

Faults, equally likely: ``503-before`` (nothing applied), ``503-after`` (applied, then 503),
``429`` (Retry-After 1 s, nothing applied), ``timeout-before`` (hangs past the client's timeout,
nothing applied), ``timeout-after`` (applied, then hangs), ``drop`` (applied, then the connection
is closed in the middle of the response body). A request that applied is remembered under its
Idempotency-Key by the sandbox, so its retry gets the first answer without a second write.

It runs on its own event loop in a thread, so that worker processes reach it over HTTP while the
test reads ``history`` directly.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from providers.generic_rest.sandbox.server import SANDBOX, create_app
from providers.generic_rest.sandbox.store import StoredRecord

FAULTS = ("503-before", "503-after", "429", "timeout-before", "timeout-after", "drop")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Received:
    """One write a record received: ``created``, ``updated`` or ``deleted``, and its name."""

    action: str
    name: str | None


class ChaosErp:
    def __init__(self, *, token: str, fail_rate: float = 0.2, seed: int = 0, hang_s: float = 1.5) -> None:
        self.token = token
        self.fail_rate = fail_rate
        self.hang_s = hang_s
        self._random = random.Random(seed)
        self.history: dict[str, list[Received]] = {}
        self.faults: Counter[str] = Counter()
        self.requests = 0
        self.base_url = ""
        self._app: web.Application | None = None

    # --- the application --------------------------------------------------------------------

    def app(self) -> web.Application:
        app = create_app(token=self.token)
        app.middlewares.insert(0, self._middleware)  # outermost: faults wrap the sandbox whole
        sandbox = app[SANDBOX]
        write = sandbox._write

        def recorded(record: StoredRecord, kind: str) -> StoredRecord:
            stored = write(record, kind)
            name = None if record.deleted else str(record.data.get("name"))
            action = {"creates": "created", "updates": "updated", "deletes": "deleted"}[kind]
            self.history.setdefault(f"{record.entity}/{record.cw_id}", []).append(Received(action, name))
            return stored

        sandbox._write = recorded  # type: ignore[method-assign]
        self._app = app
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/v1/"):
            return await handler(request)  # the control API (/_sandbox) is never faulted
        self.requests += 1
        if self._random.random() >= self.fail_rate:
            return await handler(request)
        fault = self._random.choice(FAULTS)
        self.faults[fault] += 1
        if fault == "503-before":
            return web.json_response({"error": "chaos: 503 before applying"}, status=503)
        if fault == "429":
            return web.json_response({"error": "chaos: slow down"}, status=429, headers={"Retry-After": "1"})
        if fault == "timeout-before":
            await asyncio.sleep(self.hang_s)
            return web.json_response({"error": "chaos: too late"}, status=503)
        response = await handler(request)  # applied
        if fault == "503-after":
            return web.json_response({"error": "chaos: 503 after applying"}, status=503)
        if fault == "timeout-after":
            await asyncio.sleep(self.hang_s)
            return response
        return await _drop_mid_body(request)

    # --- what happened ----------------------------------------------------------------------

    def record(self, entity: str, cw_id: str) -> StoredRecord | None:
        assert self._app is not None
        return self._app[SANDBOX].store.get(entity, cw_id)

    def records(self) -> list[StoredRecord]:
        assert self._app is not None
        return self._app[SANDBOX].store.records()

    # --- running ----------------------------------------------------------------------------

    @contextmanager
    def serving(self) -> Iterator[ChaosErp]:
        """Serve on 127.0.0.1 (a free port) from a daemon thread while the block runs."""
        ready: threading.Event = threading.Event()
        loop = asyncio.new_event_loop()
        stop = asyncio.Event()
        failure: list[BaseException] = []

        async def serve() -> None:
            runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=0.25)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.base_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
            ready.set()
            await stop.wait()
            await runner.cleanup()

        def run() -> None:
            try:
                loop.run_until_complete(serve())
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting test
                failure.append(exc)
                ready.set()
            finally:
                loop.close()

        thread = threading.Thread(target=run, name="chaos-erp", daemon=True)
        thread.start()
        ready.wait(30)
        if failure:
            raise failure[0]
        try:
            yield self
        finally:
            loop.call_soon_threadsafe(stop.set)
            thread.join(timeout=10)


async def _drop_mid_body(request: web.Request) -> web.StreamResponse:
    """Send the headers and part of the body, then close the connection."""
    stream = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    stream.content_length = 100
    await stream.prepare(request)
    await stream.write(b'{"external_id": "')
    transport: Any = request.transport
    if transport is not None:
        transport.close()
    return stream
