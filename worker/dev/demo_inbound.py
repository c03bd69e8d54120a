"""The inbound part of ``cwi demo``: one client whose sandbox ERP fires webhooks, users changing
records on both sides, every genuine change applied once and every echo of our own writes ignored.

CW is the fake CW (``worker.dev.cw_sandbox``), whose events go onto the bus as CW's would; the sandbox's
webhooks go to the real listener (``worker.ingress``, as `cwi serve` runs it) at the endpoint
`cwi webhooks url` would issue, and the listener publishes them to the bus.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass
from typing import Any

from rich.console import Console

from config_db import clients, sync_log
from config_db.secrets import SecretBox
from contracts import Entity
from providers.generic_rest.sandbox import SandboxServer
from worker.bootstrap import App, open_app
from worker.buses.base import OutgoingMessage
from worker.dev import fixtures as fx
from worker.dev.cw_sandbox import CWServer
from worker.dev.listening import listening
from worker.dev.quiet import run_until_quiet
from worker.ingress.ratelimit import RateLimiter
from worker.settings import Settings

INBOUND_CLIENT = "hooli"
API_USER = "cwi-demo"
SEED, ERP_UPDATES, ERP_DELETES, ERP_CREATES, CW_UPDATES = 80, 40, 5, 10, 30
# The demo's users change a whole batch at once: let the sandbox's burst through the listener's
# per-URL limit (the default would answer 429 and the sandbox give up after its few retries).
DEMO_RATE_PER_S, DEMO_BURST = 1000, 1000


@dataclass
class InboundReport:
    cw_user_changes: int = 0
    erp_user_changes: int = 0
    webhooks_sent: int = 0
    applied: int = 0
    erp_echoes: int = 0
    cw_echoes: int = 0
    cw_writes: int = 0
    erp_writes: int = 0


async def run_inbound(settings: Settings, cw: CWServer, token: str, console: Console) -> InboundReport:
    report = InboundReport()
    async with (
        open_app(settings, http=True) as app,
        listening(app, limiter=RateLimiter(DEMO_RATE_PER_S, DEMO_BURST)) as listener,
    ):
        cw.cw.on_event = _publisher(app)
        async with SandboxServer(token=token, api_user=API_USER) as erp:
            await app.db.run(lambda db: _provision(db, settings.secret, erp.base_url, token))
            endpoint = await listener.endpoint(INBOUND_CLIENT)
            erp.sandbox.webhooks.subscribe(endpoint.url, endpoint.secret)
            console.print(
                f"inbound: {INBOUND_CLIENT}'s sandbox ERP at {erp.base_url} fires webhooks "
                f"to the listener at {listener.base_url}"
            )
            drains = [erp.drain_webhooks]
            rng = random.Random(11)
            for n in range(SEED):
                await cw.cw.user_change(INBOUND_CLIENT, Entity.customer, fx.customer(INBOUND_CLIENT, n, rng))
            await run_until_quiet(app, drains)
            await _user_changes(cw, erp, rng, report)
            await run_until_quiet(app, drains)
            _count(app, erp, cw, report)
    return report


async def _user_changes(cw: CWServer, erp: SandboxServer, rng: random.Random, report: InboundReport) -> None:
    """Users at work on both sides, each record changed on one side only (no conflicts)."""
    ids = [f"{INBOUND_CLIENT}-cus-{n}" for n in range(SEED)]
    rng.shuffle(ids)
    erp_updates, erp_deletes = ids[:ERP_UPDATES], ids[ERP_UPDATES : ERP_UPDATES + ERP_DELETES]
    for cw_id in erp_updates:
        data = dict(erp.sandbox.store.get("customer", cw_id).data)  # type: ignore[union-attr]
        _erp(erp, {"entity": "customer", "cw_id": cw_id, "data": {**data, "name": f"{data['name']} (ERP)"}})
    for cw_id in erp_deletes:
        _erp(erp, {"entity": "customer", "cw_id": cw_id, "delete": True})
    for n in range(ERP_CREATES):
        record = fx.customer("erp", 500 + n, rng)
        _erp(erp, {"entity": "customer", "data": record})
    cw_updates = ids[ERP_UPDATES + ERP_DELETES :][:CW_UPDATES]
    for cw_id in cw_updates:
        current = cw.cw.get(INBOUND_CLIENT, Entity.customer, cw_id)
        assert current is not None
        await cw.cw.user_change(
            INBOUND_CLIENT, Entity.customer, {**current, "email": f"new-{cw_id}@example.no"}
        )
    report.erp_user_changes = ERP_UPDATES + ERP_DELETES + ERP_CREATES
    report.cw_user_changes = SEED + len(cw_updates)


def _erp(erp: SandboxServer, spec: dict[str, Any]) -> None:
    status, body = erp.sandbox.user_change(spec)
    if status != 200:
        raise RuntimeError(f"sandbox refused a user change: {body}")


def _provision(db: Any, secret_key: str | None, base_url: str, token: str) -> None:
    clients.add_client(db, INBOUND_CLIENT, INBOUND_CLIENT.title())
    credentials = SecretBox(secret_key).encrypt({"token": token})
    stored = clients.StoredConnection(
        INBOUND_CLIENT, "generic_rest", base_url, {"api_user": API_USER}, credentials, True
    )
    clients.set_connection(db, stored)


def _publisher(app: App) -> Any:
    async def publish(event: dict[str, Any]) -> None:
        message = OutgoingMessage(json.dumps(event).encode(), event["id"], event["client_id"])
        await app.bus.publish([message])

    return publish


def _count(app: App, erp: SandboxServer, cw: CWServer, report: InboundReport) -> None:
    rows = app.db.run_sync(lambda db: sync_log.entries(db, client_id=INBOUND_CLIENT, limit=1_000_000))
    actions = Counter((r["direction"], r["action"]) for r in rows)
    report.applied = actions["inbound", "inbound"]
    report.erp_echoes = actions["inbound", "echo_ignored"]
    report.cw_echoes = actions["outbound", "echo_ignored"]
    report.webhooks_sent = erp.sandbox.webhooks.sent
    report.cw_writes = cw.cw.stats.writes
    stats = erp.sandbox.stats
    report.erp_writes = stats.creates + stats.updates + stats.deletes
