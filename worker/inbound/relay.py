"""A minimal webhook receiver for generic REST ERPs: verify, convert, publish. A stand-in for ``cwi serve``.

``cwi demo`` and the tests deliver the sandbox ERP's webhooks through this one class, so that
swapping in the real listener changes one place. It does exactly what the listener does with a
call: Standard Webhooks verification (providers/generic_rest/webhooks.py), one envelope per change
(``webhook_envelopes``), published with the client id as session id; 202 on success.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Mapping
from types import TracebackType
from typing import Self

from aiohttp import web

from providers.base import WebhookRejected
from providers.generic_rest.webhooks import parse_webhook
from worker.buses.base import Bus
from worker.inbound.envelopes import webhook_envelopes
from worker.publishing import to_message

PROVIDER = "generic_rest"


class WebhookRelay:
    """``async with WebhookRelay(bus, {client: secret}) as relay: relay.url_for(client)``."""

    def __init__(self, bus: Bus, secrets: Mapping[str, str]) -> None:
        self._bus = bus
        self._secrets = dict(secrets)
        self.counts: Counter[str] = Counter()
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_post("/webhooks/generic_rest/{client_id}", self._receive)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.25)
        self.base_url = ""

    def url_for(self, client_id: str) -> str:
        return f"{self.base_url}/webhooks/{PROVIDER}/{client_id}"

    async def _receive(self, request: web.Request) -> web.Response:
        client_id = request.match_info["client_id"]
        secret = self._secrets.get(client_id)
        if secret is None:
            self.counts["rejected:unknown"] += 1
            return web.json_response({"error": "unknown webhook"}, status=404)
        body = await request.read()
        try:
            changes = parse_webhook(request.headers, body, secret=secret)
        except WebhookRejected as exc:
            self.counts[f"rejected:{exc.reason}"] += 1
            status = 400 if exc.reason == "malformed" else 401
            return web.json_response({"error": str(exc)}, status=status)
        envelopes = webhook_envelopes(
            client_id, PROVIDER, changes, body=body, received_at=dt.datetime.now(dt.UTC)
        )
        await self._bus.publish([to_message(env) for env in envelopes])
        self.counts["accepted"] += 1
        self.counts["published"] += len(envelopes)
        return web.json_response({"published": len(envelopes)}, status=202)

    async def __aenter__(self) -> Self:
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._runner.cleanup()
