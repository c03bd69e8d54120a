"""The chaos run: real ``cwi run`` processes on a real bus against the chaos ERP, SIGKILLed at
random and restarted, while the plan's events are published in waves; then everything drains.

Buses: ``local-sqlite`` (one process at a time), ``local-postgres`` (two competing processes),
``azure`` (the Service Bus test peer, a queue) and ``azure-sessions`` (a session queue), both with
two processes. The configuration database (the journal) is the local bus's own, or SQLite beside
Service Bus. Worker logs go to files in ``workdir``; ``check.py`` judges the outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from sqlalchemy import text

from config_db import clients
from config_db.database import make_engine
from config_db.migrate import upgrade
from config_db.models import metadata
from config_db.secrets import SecretBox
from tests.chaos.erp import ChaosErp
from tests.chaos.plan import Plan, Size, client_name, plan
from tests.integration.test_worker_processes import outcomes
from tests.servicebus_peer import EntityOptions, ServiceBusPeer
from worker.buses.azure import AzureBus
from worker.buses.base import OutgoingMessage
from worker.buses.local import LocalBus
from worker.db import Database
from worker.settings import load_azure_settings

SECRET_KEY = "chaos-secret-key-0123456789"
TOKEN = "chaos-token"
QUEUE = "cwi-chaos"
LOCK_S = 3.0
MAX_DELIVERIES = 10
ROOT = Path(__file__).resolve().parents[2]
BUSES = ("local-sqlite", "local-postgres", "azure", "azure-sessions")


@dataclass(frozen=True)
class Chaos:
    bus: str
    size: Size
    kills: int
    seed: int = 1
    fail_rate: float = 0.2
    waves: int = 4
    concurrency: int = 8
    drain_timeout_s: float = 300.0
    receivers: int = 1  # CWI_SERVICEBUS_RECEIVERS of each worker (a Service Bus queue without sessions)

    @property
    def processes(self) -> int:
        return 1 if self.bus == "local-sqlite" else 2


@dataclass
class Outcome:
    plan: Plan
    erp: ChaosErp
    db_url: str
    logs: list[Path]
    kills: int
    seconds: float
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    journal: dict[str, int] = field(default_factory=dict)


class Workers:
    """``processes`` slots, each a ``cwi run`` process, killed and restarted on demand."""

    def __init__(self, env: dict[str, str], processes: int, workdir: Path) -> None:
        self.env = env
        self.logs = [workdir / f"worker-{n}.log" for n in range(processes)]
        self._procs: list[subprocess.Popen[bytes] | None] = [None] * processes
        self._files: list[IO[bytes]] = [log.open("ab") for log in self.logs]
        self._offsets = [0] * processes
        """Where each slot's current process began writing in its log (the log is appended to)."""

    def start(self, slot: int) -> None:
        self._files[slot].flush()
        self._offsets[slot] = self.logs[slot].stat().st_size
        command = [sys.executable, "-m", "worker.cli.main", "run"]
        self._procs[slot] = subprocess.Popen(
            command, env=self.env, cwd=ROOT, stdout=self._files[slot], stderr=subprocess.STDOUT
        )

    def kill(self, slot: int) -> None:
        proc = self._procs[slot]
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)

    def check_alive(self) -> None:
        for slot, proc in enumerate(self._procs):
            if proc is not None and proc.poll() is not None:
                raise AssertionError(
                    f"worker {slot} exited by itself ({proc.returncode}): see {self.logs[slot]}"
                )

    def _until_started(self, limit_s: float = 60.0) -> None:
        """Until every process has said "worker started" (its signal handlers are installed): a
        SIGTERM to a process still importing (seconds on a loaded machine) kills it outright."""
        deadline = time.monotonic() + limit_s
        for slot, log in enumerate(self.logs):
            while b'"worker started"' not in log.read_bytes()[self._offsets[slot] :]:
                self.check_alive()
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"worker {slot} (pid {self._pid(slot)}) did not start within {limit_s:g} s: see {log}"
                    )
                time.sleep(0.1)

    def _pid(self, slot: int) -> int | None:
        proc = self._procs[slot]
        return proc.pid if proc is not None else None

    def stop(self) -> None:
        """SIGTERM every process; each must stop cleanly (exit 0)."""
        self._until_started()
        for proc in self._procs:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = []
        for proc in self._procs:
            if proc is not None:
                try:
                    codes.append(proc.wait(timeout=60))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    codes.append(proc.wait())
        for file in self._files:
            file.close()
        assert codes == [0] * len(codes), f"workers' exit codes after SIGTERM: {codes}"


def run(chaos: Chaos, db_url: str, workdir: Path) -> Outcome:
    """The whole run; every process it started is gone when it returns."""
    the_plan = plan(chaos.size, chaos.seed)
    _fresh_database(db_url)
    erp = ChaosErp(token=TOKEN, fail_rate=chaos.fail_rate, seed=chaos.seed)
    with erp.serving(), _peer(chaos) as peer:
        _provision(db_url, erp.base_url, chaos.size.clients)
        env = _worker_env(chaos, db_url, peer)
        workers = Workers(env, chaos.processes, workdir)
        started = time.monotonic()
        try:
            for slot in range(chaos.processes):
                workers.start(slot)
            kills = _publish_and_kill(chaos, the_plan, workers, db_url, peer)
            _wait_drained(chaos, db_url, peer, workers)
        finally:
            workers.stop()
        seconds = time.monotonic() - started
        outcome = Outcome(the_plan, erp, db_url, workers.logs, kills, seconds)
        outcome.dead_letters = asyncio.run(_dead_letters(chaos, db_url, peer))
        outcome.journal = outcomes(db_url)
    return outcome


def _publish_and_kill(chaos: Chaos, the_plan: Plan, workers: Workers, db_url: str, peer: Any) -> int:
    """Publish the plan in ``waves`` while killing a random worker ``kills`` times, spread out."""
    rng = random.Random(chaos.seed)
    bodies = the_plan.bodies()
    step = -(-len(bodies) // chaos.waves)
    waves = [bodies[i : i + step] for i in range(0, len(bodies), step)]  # CW publishes in order
    per_wave = [chaos.kills // len(waves) + (i < chaos.kills % len(waves)) for i in range(len(waves))]
    kills = 0
    for wave, wave_kills in zip(waves, per_wave, strict=True):
        # Counted from before the wave: a small wave may be done by the time its publishing returns.
        since: int | None = _intents(db_url)
        asyncio.run(_publish(chaos, db_url, peer, wave))
        for _ in range(wave_kills):
            _until_working(db_url, workers, since=since)
            since = None
            time.sleep(rng.uniform(0.0, 0.5))
            slot = rng.randrange(chaos.processes)
            workers.kill(slot)
            kills += 1
            time.sleep(rng.uniform(0.0, 0.3))
            workers.start(slot)
    return kills


def _until_working(
    db_url: str, workers: Workers, *, since: int | None = None, intents: int = 5, limit_s: float = 20.0
) -> None:
    """Until the workers journal ``intents`` more intents than ``since`` (default: now): a kill then
    hits work in flight (a process still starting, or one whose locks have not come back yet, would
    prove nothing)."""
    start, deadline = (_intents(db_url) if since is None else since), time.monotonic() + limit_s
    while _intents(db_url) < start + intents and time.monotonic() < deadline:
        workers.check_alive()
        time.sleep(0.05)


def _intents(db_url: str) -> int:
    engine = make_engine(db_url, pool_size=0)
    try:
        with engine.connect() as conn:
            pending = text("SELECT COUNT(*) FROM sync_log WHERE action = 'pending'")
            return int(conn.execute(pending).scalar_one())
    finally:
        engine.dispose()


def _wait_drained(chaos: Chaos, db_url: str, peer: Any, workers: Workers) -> None:
    deadline = time.monotonic() + chaos.drain_timeout_s
    quiet_since: float | None = None
    while True:
        workers.check_alive()
        left = _waiting(chaos, db_url, peer)
        if left == 0:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since > 1.0:  # nothing came back (a scheduled retry, a lock)
                return
        else:
            quiet_since = None
        if time.monotonic() > deadline:
            raise AssertionError(f"not drained within {chaos.drain_timeout_s:g} s: {left} waiting")
        time.sleep(0.25)


def _waiting(chaos: Chaos, db_url: str, peer: Any) -> int:
    if peer is not None:
        return int(peer.active_count(QUEUE) + peer.scheduled_count(QUEUE))
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            count = conn.execute(
                text("SELECT COUNT(*) FROM bus_messages WHERE state = 'active'")
            ).scalar_one()
    finally:
        engine.dispose()
    return int(count)


# --- set-up -------------------------------------------------------------------------------------


def _fresh_database(db_url: str) -> None:
    engine = make_engine(db_url)
    metadata.drop_all(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
    upgrade(engine)
    engine.dispose()


def _provision(db_url: str, base_url: str, n_clients: int) -> None:
    engine = make_engine(db_url)
    credentials = SecretBox(SECRET_KEY).encrypt({"token": TOKEN})
    # A short client timeout, so that the ERP's hangs are timeouts.
    settings = {"timeout_s": "1"}
    with engine.begin() as conn:
        for n in range(n_clients):
            name = client_name(n)
            clients.add_client(conn, name, name)
            stored = clients.StoredConnection(name, "generic_rest", base_url, settings, credentials, True)
            clients.set_connection(conn, stored)
    engine.dispose()


@contextlib.contextmanager
def _peer(chaos: Chaos) -> Iterator[ServiceBusPeer | None]:
    if not chaos.bus.startswith("azure"):
        yield None
        return
    options = EntityOptions(
        max_delivery_count=MAX_DELIVERIES,
        lock_duration_s=LOCK_S,
        requires_session=chaos.bus == "azure-sessions",
    )
    with ServiceBusPeer(entities={QUEUE: options}) as peer:
        yield peer


def _worker_env(chaos: Chaos, db_url: str, peer: ServiceBusPeer | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CWI_")}
    env.update(
        CWI_DATABASE_URL=db_url,
        CWI_SECRET_KEY=SECRET_KEY,
        CWI_LOG_FORMAT="json",
        CWI_CONCURRENCY=str(chaos.concurrency),
        CWI_RETRY_DELAYS="0.3,0.6,1,2,3",
        CWI_INPROCESS_ATTEMPTS="2",
        CWI_LOCK_DURATION_S=str(LOCK_S),
        CWI_MAX_DELIVERY_COUNT=str(MAX_DELIVERIES),
        CWI_SHUTDOWN_GRACE_S="5",
        CWI_CONNECTION_CACHE_S="600",
        CWI_METRICS_PORT="0",  # several workers on one host: the default port is taken by the first
    )
    if peer is not None:
        env.update(
            CWI_BUS="azure",
            CWI_SERVICEBUS_QUEUE=QUEUE,
            CWI_SERVICEBUS_CONNECTION_STRING=peer.connection_string,
            CWI_SERVICEBUS_SESSIONS="true" if chaos.bus == "azure-sessions" else "false",
            CWI_SERVICEBUS_SESSION_IDLE_S="0.5",
            CWI_SERVICEBUS_RECEIVERS=str(chaos.receivers),
            CWI_SERVICEBUS_RECONNECT_S="60",
        )
    return env


# --- the bus, from the test's side --------------------------------------------------------------


def _azure(chaos: Chaos, peer: ServiceBusPeer) -> AzureBus:
    settings = load_azure_settings(
        servicebus_queue=QUEUE,
        servicebus_connection_string=peer.connection_string,
        servicebus_sessions=chaos.bus == "azure-sessions",
    )
    return AzureBus(settings, lock_duration_s=LOCK_S)


async def _publish(chaos: Chaos, db_url: str, peer: Any, wave: list[tuple[str, str, bytes]]) -> None:
    messages = [OutgoingMessage(body, message_id, session) for message_id, session, body in wave]
    if peer is not None:
        bus = _azure(chaos, peer)
        try:
            await bus.publish(messages)
        finally:
            await bus.close()
        return
    db = Database(make_engine(db_url))
    try:
        await LocalBus(db, queue=os.environ.get("CWI_QUEUE", "cwi")).publish(messages)
    finally:
        await db.close()


async def _dead_letters(chaos: Chaos, db_url: str, peer: Any) -> list[dict[str, Any]]:
    db = Database(make_engine(db_url))
    bus: LocalBus | AzureBus = _azure(chaos, peer) if peer is not None else LocalBus(db)
    try:
        letters = await bus.dead_letters(10_000)
    finally:
        await bus.close()
        await db.close()
    return [
        {"id": json.loads(d.body).get("id"), "reason": d.reason, "description": d.description}
        for d in letters
    ]
