"""Prometheus metrics of the listener and the worker, in their own registry (tests stay isolated)."""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from worker.buses.base import Delivery
from worker.messaging.outcomes import Abandon, Complete, DeadLetter, Outcome, Retry
from worker.messaging.runner import Handler

ECHO_RESULT = "echo_ignored"  # the Complete result of an inbound change we caused ourselves


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.webhooks_received = Counter("cwi_webhooks_received", "Webhook calls received", registry=r)
        self.webhooks_accepted = Counter(
            "cwi_webhooks_accepted", "Webhook calls answered 202 with new changes published", registry=r
        )
        self.webhooks_rejected = Counter(
            "cwi_webhooks_rejected", "Webhook calls refused, by reason", ["reason"], registry=r
        )
        self.webhooks_duplicates = Counter(
            "cwi_webhooks_duplicates", "Webhook calls repeating a delivery already published", registry=r
        )
        self.webhook_envelopes = Counter(
            "cwi_webhook_envelopes_published", "Envelopes the listener published", registry=r
        )
        self.received = Counter("cwi_worker_received", "Messages the worker received", registry=r)
        self.completed = Counter(
            "cwi_worker_completed", "Messages completed, by result", ["result"], registry=r
        )
        self.retried = Counter("cwi_worker_retried", "Messages rescheduled for a delayed retry", registry=r)
        self.dead_lettered = Counter(
            "cwi_worker_dead_lettered", "Messages dead-lettered, by reason", ["reason"], registry=r
        )
        self.abandoned = Counter("cwi_worker_abandoned", "Messages abandoned for redelivery", registry=r)
        self.echo_ignored = Counter(
            "cwi_worker_echo_ignored", "Inbound changes recognised as our own writes", registry=r
        )
        self.in_flight = Gauge("cwi_worker_in_flight", "Messages being handled now", registry=r)
        self.reconcile_drift = Gauge(
            "cwi_reconcile_drift",
            "Records out of step at the last scheduled reconciliation",
            ["client_id", "entity"],
            registry=r,
        )
        self.mapping_problems = Gauge(
            "cwi_mapping_problems",
            "Settings that name something the ERP does not have, and unmapped VAT rates",
            ["client_id"],
            registry=r,
        )
        self.handler_seconds = Histogram(
            "cwi_worker_handler_seconds", "Time the pipeline took per message", registry=r
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def settled(self, outcome: Outcome) -> None:
        """The worker's ``on_settled`` hook."""
        match outcome:
            case Complete(result):
                self.completed.labels(result=result).inc()
                if result == ECHO_RESULT:
                    self.echo_ignored.inc()
            case Retry():
                self.retried.inc()
            case DeadLetter(reason):
                self.dead_lettered.labels(reason=reason.value).inc()
            case Abandon():
                self.abandoned.inc()

    def chain_settled(self, other: Callable[[Outcome], None] | None) -> Callable[[Outcome], None]:
        """``settled`` followed by a hook that was already installed."""
        if other is None:
            return self.settled

        def both(outcome: Outcome) -> None:
            self.settled(outcome)
            other(outcome)

        return both


class MeteredPipeline:
    """The worker's pipeline, counted and timed: received, in flight, handler latency.

    A wrapper rather than an edit to the runner's loop: the runner takes any ``Handler``.
    """

    def __init__(self, inner: Handler, metrics: Metrics) -> None:
        self._inner = inner
        self._metrics = metrics
        self.db = inner.db

    async def handle(self, delivery: Delivery) -> Outcome:
        m = self._metrics
        m.received.inc()
        m.in_flight.inc()
        started = time.perf_counter()
        try:
            return await self._inner.handle(delivery)
        finally:
            m.handler_seconds.observe(time.perf_counter() - started)
            m.in_flight.dec()
