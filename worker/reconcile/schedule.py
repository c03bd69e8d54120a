"""Scheduled reconciliation and mapping validation, per client, beside the worker.

Each enabled connection may set ``reconcile_schedule`` (cron; with ``reconcile_repair=true`` the run
repairs what it finds) and ``validate_schedule`` (cron, default ``0 6 * * *``). A scheduler goes
through the clients one at a time; a job is due when its cron expression has fired since its last
run (a job that never ran is due at once). Before running, it takes the client's lease in the
database (``config_db.reconcile.acquire_run``), held and extended while the job runs, so two
schedulers in two processes never run one client's job at once, and the last run time written when
the lease is let go keeps the other from running it again. Reconciliation uses the connection's own
provider (its requests count against the same cap as the live ones) at a share of that cap
(``reconcile_share``), so live traffic keeps priority.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial

from config_db import clients
from config_db import reconcile as state
from providers.errors import ProviderError
from providers.settings import SettingsReader
from worker.bootstrap import App
from worker.logging import get_logger
from worker.metrics import Metrics
from worker.operators.actors import Actor, audit
from worker.reconcile.errors import ReconcileError
from worker.reconcile.validate import Validation, ValidationError, validate_client
from worker.stopping import stop_if_cancelled

log = get_logger()

RECONCILE, VALIDATE = "reconcile", "validate"
SCHEDULER = Actor("scheduler", "operator", via="schedule")
"""Who the audit trail (the console's Audit page) names for scheduled jobs."""
DEFAULT_VALIDATE = "0 6 * * *"
TICK_S = 30.0
LEASE_S = 600.0
"""How long a job's lease holds without being extended (a holder that died frees it then)."""


def due(cron: str, last: dt.datetime | None, now: dt.datetime) -> bool:
    """Has ``cron`` fired since ``last`` (never run: yes)? A schedule that never fires again
    (``0 0 31 2 *``: no 31st of February) is never due."""
    if last is None:
        return True
    from croniter import CroniterBadDateError, croniter  # here: a worker without jobs never loads it

    try:
        fired: dt.datetime = croniter(cron, last).get_next(dt.datetime)
    except CroniterBadDateError:
        return False
    return fired <= now


@dataclass(frozen=True, slots=True)
class Job:
    client_id: str
    name: str
    cron: str
    repair: bool = False


Runner = Callable[[Job], Awaitable[str]]


class Scheduler:
    def __init__(
        self,
        app: App,
        *,
        metrics: Metrics | None = None,
        holder: str | None = None,
        lease_s: float = LEASE_S,
        run_job: Runner | None = None,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.holder = holder or state.holder_name()
        self.lease_ms = int(lease_s * 1000)
        self.run_job = run_job or self._run
        self.now = now

    def jobs(self, connection: clients.StoredConnection) -> list[Job]:
        settings = SettingsReader(connection.client_id, connection.kind, connection.settings)
        found = []
        try:
            reconcile = settings.cron("reconcile_schedule")
            validate = settings.cron("validate_schedule", DEFAULT_VALIDATE)
            repair = settings.flag("reconcile_repair")
        except ProviderError as exc:
            log.warning("schedule not understood", client_id=connection.client_id, error=str(exc))
            return []
        if reconcile:
            found.append(Job(connection.client_id, RECONCILE, reconcile, repair))
        if validate:
            found.append(Job(connection.client_id, VALIDATE, validate))
        return found

    async def tick(self) -> list[Job]:
        """Every due job, one client at a time; the jobs this scheduler ran."""
        connections = await self.app.db.run(clients.list_connections)
        ran = []
        for connection in connections:
            if not connection.enabled:
                continue
            for job in self.jobs(connection):
                try:
                    if await self._run_if_due(job):
                        ran.append(job)
                except Exception as exc:  # noqa: BLE001 - one client's job never holds up the others'
                    log.warning(
                        f"scheduled {job.name} failed",
                        client_id=job.client_id,
                        error=f"{exc.__class__.__name__}: {exc}",
                    )
                    stop_if_cancelled()
        return ran

    async def _run_if_due(self, job: Job) -> bool:
        last = await self.app.db.run(partial(state.last_run, client_id=job.client_id, job=job.name))
        if not due(job.cron, last, self.now()):
            return False
        if not await self._hold(job):
            return False  # another scheduler is running it
        ran_at, outcome = None, None
        try:
            # Read again under the lease: another scheduler may have run it just before we took it.
            last = await self.app.db.run(partial(state.last_run, client_id=job.client_id, job=job.name))
            if not due(job.cron, last, self.now()):
                return False
            ran_at = self.now()
            outcome = await self._with_extension(job)
            return True
        finally:
            release = partial(
                state.release_run,
                client_id=job.client_id,
                job=job.name,
                holder=self.holder,
                ran_at=ran_at,
                outcome=outcome,
            )
            await self.app.db.run(release)

    async def _hold(self, job: Job) -> bool:
        take = partial(
            state.acquire_run,
            client_id=job.client_id,
            job=job.name,
            holder=self.holder,
            now_ms=int(time.time() * 1000),
            lease_ms=self.lease_ms,
        )
        held: bool = await self.app.db.run(take)
        return held

    async def _with_extension(self, job: Job) -> str:
        """Run the job while its lease is extended every third of its length."""

        async def extend() -> None:
            while True:
                await asyncio.sleep(self.lease_ms / 3000)
                await self._hold(job)

        keeper = asyncio.create_task(extend())
        try:
            return await self.run_job(job)
        except (ProviderError, ReconcileError, ValidationError) as exc:
            log.warning(f"scheduled {job.name} failed", client_id=job.client_id, error=str(exc))
            if self.metrics is not None and job.name != VALIDATE:
                self.metrics.reconciled(job.client_id, "failed")
            return f"failed: {exc}"
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper

    async def _run(self, job: Job) -> str:
        if job.name == VALIDATE:
            found = await validate_client(self.app, job.client_id)
            problems = [p.message for p in found.problems]
            await audit(self.app.db, SCHEDULER, "mapping_checked", client_id=job.client_id, problems=problems)
            return report_validation(found, self.metrics)
        # Here: a worker whose clients schedule no reconciliation never loads the reconciler.
        from worker.reconcile.run import Options
        from worker.reconcile.service import reconcile_client

        report = await reconcile_client(self.app, job.client_id, Options(repair=job.repair), shared=True)
        counts = {e.entity.value: e.counts() for e in report.entities}
        await audit(
            self.app.db,
            SCHEDULER,
            "reconciled",
            client_id=job.client_id,
            counts=counts,
            published=report.published,
        )
        if self.metrics is not None:
            drift = {entity.entity.value: len(entity.findings) for entity in report.entities}
            self.metrics.reconciled(job.client_id, "drift" if report.drift else "in_step", drift)
        log.info(
            "reconciled",
            client_id=job.client_id,
            drift=report.drift,
            published=report.published,
            erp_requests=report.erp_requests,
        )
        return f"drift {report.drift}, published {report.published}"

    async def run(self, stop: asyncio.Event, *, tick_s: float = TICK_S) -> None:
        while not stop.is_set():
            try:
                await self.tick()
            except Exception as exc:  # noqa: BLE001 - the scheduler outlives one bad tick (logged)
                log.warning("scheduler tick failed", error=f"{exc.__class__.__name__}: {exc}")
                stop_if_cancelled()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), tick_s)


def report_validation(found: Validation, metrics: Metrics | None) -> str:
    """Each problem as a warning (the console entry), and the count as a metric."""
    for problem in found.problems:
        log.warning(
            "mapping problem", client_id=found.client_id, setting=problem.setting, detail=problem.message
        )
    for note in found.notes:
        log.info("mapping not fully checked", client_id=found.client_id, detail=note)
    if metrics is not None:
        metrics.mapping_checked(found.client_id, len(found.problems))
    return f"{len(found.problems)} mapping problem(s)"


async def validate_all(app: App, metrics: Metrics | None = None) -> None:
    """At worker start: every enabled connection's mapping, problems logged as warnings."""
    for connection in await app.db.run(clients.list_connections):
        if not connection.enabled:
            continue
        try:
            report_validation(await validate_client(app, connection.client_id), metrics)
        except (ProviderError, ValidationError) as exc:
            log.warning("mapping not checked", client_id=connection.client_id, error=str(exc))


@asynccontextmanager
async def scheduled(
    app: App, *, metrics: Metrics | None = None, jobs: bool = True, validate: bool = True
) -> AsyncIterator[None]:
    """Beside the worker: (``validate``) the mappings checked once at start, in the background, and
    (``jobs``) the scheduler running until the block ends."""
    stop = asyncio.Event()
    checks = asyncio.create_task(validate_all(app, metrics)) if validate else None
    scheduler = asyncio.create_task(Scheduler(app, metrics=metrics).run(stop)) if jobs else None
    try:
        yield
    finally:
        stop.set()
        if checks is not None:
            checks.cancel()
        for task in (checks, scheduler):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
