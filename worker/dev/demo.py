"""``cwi demo``: the whole worker on its embedded default, against the bundled sandbox ERP.

A fresh temporary SQLite database, two provisioned clients (plus one that has no connection),
about 1,000 mixed events — some invalid, some the sandbox rejects, some duplicates — processed until
idle, then a summary. Then the inbound part (``worker.dev.demo_inbound``): a third client whose sandbox
ERP fires webhooks, users changing records on both sides, and the echoes of our own writes ignored.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import tempfile
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from config_db import clients
from config_db.secrets import SecretBox
from providers.generic_rest.sandbox import SandboxServer
from worker.bootstrap import open_app, upgrade_database
from worker.buses.base import OutgoingMessage
from worker.dev import fixtures as fx
from worker.dev.cw_sandbox import CWServer
from worker.dev.demo_inbound import INBOUND_CLIENT, InboundReport, run_inbound
from worker.logging import configure
from worker.messaging.outcomes import Outcome, Retry
from worker.settings import Settings

CLIENTS = ("acme", "globex")
UNCONFIGURED = "initech"


@dataclass
class DemoPlan:
    messages: list[OutgoingMessage] = field(default_factory=list)
    kinds: Counter[str] = field(default_factory=Counter)

    def add(self, env: dict[str, Any], kind: str = "valid") -> None:
        body = json.dumps(env).encode()
        client_id = env.get("client_id")
        session = client_id if isinstance(client_id, str) and client_id else None
        self.messages.append(OutgoingMessage(body=body, message_id=str(uuid.uuid4()), session_id=session))
        self.kinds[kind] += 1


def _client_events(plan: DemoPlan, client_id: str, rng: random.Random) -> None:
    seq = 0

    def emit(type_: str, data: dict[str, Any] | None, kind: str = "valid", **extra: Any) -> dict[str, Any]:
        nonlocal seq
        seq += 1
        env = fx.envelope(client_id, type_, data, seq=seq, **extra)
        plan.add(env, kind)
        return env

    for n in range(60):
        emit("customer.created", fx.customer(client_id, n, rng))
    for n in range(60, 66):
        emit("customer.created", fx.customer(client_id, n, rng, valid_org=False), "rejected by the sandbox")
    for n in range(20):
        emit("supplier.created", fx.supplier(client_id, n, rng))
    for n in range(25):
        emit("project.created", fx.project(client_id, n, n))
    sent: list[dict[str, Any]] = []
    for n in range(340):
        sent.append(emit("invoice.created", fx.invoice(client_id, n, n % 60, rng)))
    for n in range(340, 346):
        emit("invoice.created", fx.invoice(client_id, n, 1, rng, currency="JPY"), "rejected by the sandbox")
    for n in range(20):
        updated = {**fx.customer(client_id, n, rng), "name": f"Customer {n} Holding AS"}
        emit("customer.updated", updated)
    for n in range(55, 60):
        emit("customer.deleted", None, record_id=f"{client_id}-cus-{n}")
    for env in rng.sample(sent, 15):
        plan.add(env, "duplicate")  # the same envelope again: the inbox must skip it
    bad = fx.invoice(client_id, 999, 1, rng)
    emit("invoice.created", {**bad, "currency": "XYZ"}, "invalid")
    emit("invoice.created", {**bad, "lines": []}, "invalid")
    emit("invoice.shipped", bad, "invalid")
    emit("customer.created", {"id": "x", "number": "1"}, "invalid")


def build_plan(seed: int = 7) -> DemoPlan:
    rng = random.Random(seed)
    plan = DemoPlan()
    for client_id in CLIENTS:
        _client_events(plan, client_id, rng)
    for n in range(5):
        plan.add(
            fx.envelope(UNCONFIGURED, "customer.created", fx.customer(UNCONFIGURED, n, rng), seq=n),
            "unknown client",
        )
    plan.add({"hello": "not an envelope"}, "invalid")
    return plan


async def _provision(settings: Settings, base_url: str, token: str) -> None:
    box = SecretBox(settings.secret)

    def provision(db: Any) -> None:
        for client_id in (*CLIENTS, UNCONFIGURED):
            clients.add_client(db, client_id, client_id.title())
        for client_id in CLIENTS:
            clients.set_connection(
                db,
                clients.StoredConnection(
                    client_id, "generic_rest", base_url, {}, box.encrypt({"token": token}), True
                ),
            )

    async with open_app(settings) as app:
        await app.db.run(provision)


async def run_demo(console: Console) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="cwi-demo-"))
    cw_key = secrets.token_urlsafe(16)
    async with CWServer(api_key=cw_key) as cw:
        settings = Settings(
            database_url=f"sqlite:///{workdir / 'demo.db'}",
            secret_key=secrets.token_urlsafe(32),
            retry_delays=(0.5, 1.0),
            concurrency=16,
            cw_graphql_url=cw.graphql_url,
            cw_write_url=cw.write_url,
            cw_api_key=cw_key,
        )
        return await _run(console, workdir, settings, cw)


async def _run(console: Console, workdir: Path, settings: Settings, cw: CWServer) -> int:
    log_path = workdir / "worker.log"
    with log_path.open("w") as log_file:
        configure(fmt="json", level="INFO", stream=log_file)
        upgrade_database(settings)
        token = secrets.token_urlsafe(16)
        plan = build_plan()
        async with SandboxServer(token=token, fail_rate=0.02, seed=1) as sandbox:
            console.print(f"sandbox ERP at {sandbox.base_url}; database and log in {workdir}")
            await _provision(settings, sandbox.base_url, token)
            outcomes = await _process(settings, plan, console)
            stats = await sandbox.stats()
        inbound = await run_inbound(settings, cw, token, console)
    _summary(console, plan, outcomes, stats)
    _inbound_summary(console, inbound)
    console.print(f"worker log: {log_path}")
    return 0


async def _process(settings: Settings, plan: DemoPlan, console: Console) -> Counter[str]:
    async with open_app(settings, http=True) as app:
        await app.bus.publish(plan.messages)
        console.print(
            f"published {len(plan.messages)} events: " + ", ".join(f"{v} {k}" for k, v in plan.kinds.items())
        )
        with Progress(
            TextColumn("processing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
        ) as progress:
            task = progress.add_task("events", total=len(plan.messages))

            def settled(outcome: Outcome) -> None:
                if not isinstance(outcome, Retry):
                    progress.advance(task)

            counts: Counter[str] = Counter()
            while True:
                worker = app.worker()
                worker.on_settled = settled
                counts += (await worker.run(until_idle=True)).counts
                if (await app.bus.stats()).scheduled == 0:
                    break
                await asyncio.sleep(0.3)  # delayed retries become visible shortly
    return counts


def _summary(console: Console, plan: DemoPlan, counts: Counter[str], sandbox_stats: dict[str, Any]) -> None:
    table = Table(title="cwi demo: what happened", show_header=True)
    table.add_column("outcome")
    table.add_column("messages", justify="right")
    for key in ("created", "updated", "deleted", "unchanged"):
        table.add_row(key, str(counts.get(key, 0)))
    table.add_row("duplicates skipped", str(counts.get("duplicate", 0)))
    table.add_row("delayed retries scheduled", str(counts.get("retry", 0)))
    for key, value in sorted(counts.items()):
        if key.startswith("dead:"):
            table.add_row(f"dead-lettered: {key.removeprefix('dead:')}", str(value))
    console.print(table)
    if sandbox_stats:
        console.print(
            f"sandbox ERP saw {sandbox_stats.get('requests')} requests "
            f"({sandbox_stats.get('creates')} creates, {sandbox_stats.get('updates')} updates, "
            f"{sandbox_stats.get('deletes')} deletes)"
        )


def _inbound_summary(console: Console, report: InboundReport) -> None:
    table = Table(
        title=f"cwi demo, inbound ({INBOUND_CLIENT}): both directions, no ping-pong", show_header=True
    )
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("changes made by users in CW", str(report.cw_user_changes))
    table.add_row("changes made by users in the ERP", str(report.erp_user_changes))
    table.add_row("webhooks fired by the sandbox ERP", str(report.webhooks_sent))
    table.add_row("inbound changes applied to CW", str(report.applied))
    table.add_row("echoes ignored: ERP webhooks of our pushes", str(report.erp_echoes))
    table.add_row("echoes ignored: CW events of our inbound writes", str(report.cw_echoes))
    table.add_row("CW Write API calls (creates/updates/deletes)", str(report.cw_writes))
    table.add_row("ERP writes (creates/updates/deletes)", str(report.erp_writes))
    console.print(table)
