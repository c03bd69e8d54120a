"""A process made observable: its metrics (``worker.metrics``) fed by the providers' HTTP and by the
bus's depth sampled every CWI_METRICS_SAMPLE_S, the worker's pipeline metered; for `cwi run`, served
with /healthz and /readyz on a port of its own (CWI_METRICS_PORT).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

from providers import reporting
from worker.bootstrap import App
from worker.buses.base import Bus, BusStatsUnavailable
from worker.logging import get_logger
from worker.messaging.runner import Worker
from worker.metrics import MeteredPipeline, Metrics
from worker.outage import impatient
from worker.settings import Settings
from worker.stopping import stop_if_cancelled

log = get_logger()


class MetricsPortUnavailable(Exception):
    """CWI_METRICS_PORT cannot be listened on; the message says what to do."""


def metrics_socket(settings: Settings) -> socket.socket | None:
    """The bound socket of the worker's own port (None when CWI_METRICS_PORT is off). Bound before
    anything else starts, so that a port in use is one clear line at once."""
    from worker.sockets import listen

    if settings.metrics_port is None:
        return None
    host, port = settings.metrics_host, settings.metrics_port
    try:
        return listen(host, port)
    except OSError as exc:
        raise MetricsPortUnavailable(
            f"CWI_METRICS_PORT: cannot listen on {host}:{port}: {exc.strerror or exc} "
            "(another process has it? set another port, 0 for any free one, or off)"
        ) from None


async def sample_bus(bus: Bus, metrics: Metrics, interval_s: float) -> None:
    """Read the bus's counts every ``interval_s`` into the bus gauges, until cancelled. A bus whose
    credentials cannot read its counts is said once, and sampling stops."""
    failing = False
    while True:
        try:
            with impatient():  # during a database outage: no sample, rather than a wait
                stats = await bus.stats()
        except BusStatsUnavailable as exc:
            log.warning("the bus cannot report its counts; no bus depth metrics", error=str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - tried again at the next interval
            if not failing:
                log.warning("bus depth not sampled", error=f"{exc.__class__.__name__}: {exc}"[:300])
            failing = True
            stop_if_cancelled()
        else:
            failing = False
            metrics.bus_sampled_now(stats)
        await asyncio.sleep(interval_s)


@contextlib.asynccontextmanager
async def observed(app: App, metrics: Metrics, worker: Worker | None = None) -> AsyncIterator[None]:
    """While the block runs: the providers' requests reported to ``metrics``, the bus sampled, and
    the ``worker`` (if any) metered and its settlements counted."""
    stop_reporting = reporting.on_http(metrics)
    sampler = asyncio.create_task(sample_bus(app.bus, metrics, app.settings.metrics_sample_s))
    if worker is not None:
        worker.pipeline = MeteredPipeline(worker.pipeline, metrics)
        worker.on_settled = metrics.chain_settled(worker.on_settled)
    try:
        yield
    finally:
        stop_reporting()
        sampler.cancel()
        await asyncio.gather(sampler, return_exceptions=True)


@contextlib.asynccontextmanager
async def serving_metrics(app: App, worker: Worker, sock: socket.socket | None) -> AsyncIterator[Metrics]:
    """`cwi run`'s observability: ``observed``, and /healthz, /readyz, /metrics served on ``sock``
    (the one ``metrics_socket`` bound, closed at the end; None: metrics kept but not served)."""
    metrics = Metrics(max_clients=app.settings.metrics_max_clients)
    async with observed(app, metrics, worker):
        if sock is None:
            yield metrics
            return
        from worker.health_port import serving_health

        async with serving_health(app, metrics, sock) as url:
            log.info("metrics served", url=f"{url}/metrics")
            yield metrics
