"""Prometheus metrics of every process (listener, worker, both), in their own registry (tests stay
isolated). ``worker.observing`` feeds them and serves them for ``cwi run``; ``cwi serve`` serves them
beside the webhooks.

Every label is bounded: ``provider`` is a known provider kind (anything else ``other``), ``client``
one of the first CWI_METRICS_MAX_CLIENTS client ids the process met (the rest ``other``), reasons,
results and states are closed sets. A message's client and provider are the ones dispatch binds for
its log lines (``worker.messaging.dispatch``), read when it is settled: one place names a message.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from providers.registry import KINDS
from providers.reporting import Connection, Limit
from worker.buses.base import BusStats, Delivery
from worker.logging import get_contextvars
from worker.messaging.outcomes import Abandon, Complete, DeadLetter, Outcome, Retry
from worker.messaging.runner import Handler

ECHO_RESULT = "echo_ignored"  # the Complete result of a change we caused ourselves (either direction)
APPLIED_RESULTS = frozenset({"created", "updated", "deleted", "inbound"})
"""Complete results that wrote the change on the other side: the echo check said "genuine"."""
OTHER = "other"
NONE = "none"
BUS_STATES = ("active", "scheduled", "dead_lettered")
_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ClientLabels:
    """Client ids as label values: the first ``cap`` met keep their id, every later one is ``other``."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._seen: set[str] = set()

    def __call__(self, client_id: str | None) -> str:
        if not client_id:
            return NONE
        if client_id in self._seen:
            return client_id
        if len(self._seen) < self.cap:
            self._seen.add(client_id)
            return client_id
        return OTHER


def provider_label(kind: str | None) -> str:
    if not kind:
        return NONE
    return kind if kind in KINDS else OTHER


def status_class(status: int | None) -> str:
    """An ERP answer as a label: 2xx … 5xx, ``429``, ``auth`` (401/403), ``error`` (no answer)."""
    if status is None:
        return "error"
    if status == 429:
        return "429"
    if status in (401, 403):
        return "auth"
    return f"{status // 100}xx"


class Metrics:
    def __init__(self, *, max_clients: int = 100) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.client = ClientLabels(max_clients)
        r = self.registry
        pc = ["provider", "client"]
        # The listener.
        self.webhooks_received = Counter(
            "cwi_webhooks_received", "Webhook calls received", ["provider"], registry=r
        )
        self.webhooks_accepted = Counter(
            "cwi_webhooks_accepted", "Webhook calls answered 202 with new changes published", pc, registry=r
        )
        self.webhooks_rejected = Counter(
            "cwi_webhooks_rejected", "Webhook calls refused, by reason", ["provider", "reason"], registry=r
        )
        self.webhooks_duplicates = Counter(
            "cwi_webhooks_duplicates", "Webhook calls repeating a delivery already published", pc, registry=r
        )
        self.webhook_envelopes = Counter(
            "cwi_webhook_envelopes_published", "Envelopes the listener published", pc, registry=r
        )
        # The worker.
        self.received = Counter("cwi_worker_received", "Messages the worker handled", pc, registry=r)
        self.completed = Counter(
            "cwi_worker_completed", "Messages completed, by result", ["result", *pc], registry=r
        )
        self.retried = Counter(
            "cwi_worker_retried", "Messages rescheduled for a delayed retry", pc, registry=r
        )
        self.dead_lettered = Counter(
            "cwi_worker_dead_lettered", "Messages dead-lettered, by reason", ["reason", *pc], registry=r
        )
        self.abandoned = Counter("cwi_worker_abandoned", "Messages abandoned for redelivery", pc, registry=r)
        self.echo_ignored = Counter(
            "cwi_worker_echo_ignored",
            "Changes recognised as our own writes (direction inbound: an ERP webhook; outbound: a CW event)",
            ["direction", *pc],
            registry=r,
        )
        self.echo_decisions = Counter(
            "cwi_worker_echo_decisions",
            "Echo checks decided: ignored (our own write) or applied (a genuine change, written)",
            ["direction", "decision", *pc],
            registry=r,
        )
        self.in_flight = Gauge("cwi_worker_in_flight", "Messages being handled now", registry=r)
        self.handler_seconds = Histogram(
            "cwi_worker_handler_seconds", "Time the pipeline took per message", ["provider"], registry=r
        )
        # The ERPs, per connection (providers.reporting).
        self.erp_seconds = Histogram(
            "cwi_erp_request_seconds",
            "ERP request latency",
            ["provider"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.erp_requests = Counter(
            "cwi_erp_requests",
            "ERP requests by answer (2xx…5xx, 429, auth, error)",
            [*pc, "status"],
            registry=r,
        )
        self.erp_rate_limited = Counter("cwi_erp_rate_limited", "ERP answers 429", pc, registry=r)
        self.erp_rate_waits = Counter(
            "cwi_erp_rate_waits",
            "Requests that waited for a rate limit (limit: erp = its window, cap = max_requests_per_minute)",
            [*pc, "limit"],
            registry=r,
        )
        self.erp_rate_wait_seconds = Counter(
            "cwi_erp_rate_wait_seconds",
            "Seconds requests waited for a rate limit",
            [*pc, "limit"],
            registry=r,
        )
        # The bus, sampled (worker.observing).
        self.bus_messages = Gauge("cwi_bus_messages", "Messages on the bus by state", ["state"], registry=r)
        self.bus_dead_lettered = Gauge(
            "cwi_bus_dead_lettered_by_reason", "Dead letters on the bus by reason", ["reason"], registry=r
        )
        self.bus_sampled = Gauge(
            "cwi_bus_sampled_timestamp_seconds",
            "When the bus's counts were last read (Unix time)",
            registry=r,
        )
        # Hooks for the parts that land from other branches: reconciliation and the webhooks publisher.
        # Reconciliation and mapping validation (worker/reconcile/schedule.py).
        self.reconcile_runs = Counter(
            "cwi_reconcile_runs", "Scheduled reconciliation runs by result", ["client", "result"], registry=r
        )
        self.reconcile_drift = Gauge(
            "cwi_reconcile_drift",
            "Records out of step at the last scheduled reconciliation",
            ["client", "entity"],
            registry=r,
        )
        self.mapping_problems = Gauge(
            "cwi_mapping_problems",
            "Settings that name something the ERP does not have, and unmapped VAT rates",
            ["client"],
            registry=r,
        )
        self.publisher_deliveries = Counter(
            "cwi_publisher_deliveries",
            "Webhook deliveries to subscribers by result",
            ["client", "result"],
            registry=r,
        )
        self.publisher_seconds = Histogram(
            "cwi_publisher_delivery_seconds",
            "Subscriber answer latency",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    # --- messages ---------------------------------------------------------------------------------

    def message_labels(self) -> tuple[str, str]:
        """(provider, client) of the message being handled in this task, as dispatch bound them."""
        bound = get_contextvars()
        return provider_label(bound.get("provider")), self.client(bound.get("client_id"))

    def settled(self, outcome: Outcome) -> None:
        """The worker's ``on_settled`` hook (called in the message's task)."""
        provider, client = self.message_labels()
        bound = get_contextvars()
        direction = bound.get("direction") or NONE
        if bound.get("subscription_id") is not None:  # a delivery to a subscriber (worker/publisher)
            latency = bound.get("subscriber_latency_ms")
            seconds = latency / 1000 if isinstance(latency, int | float) else None
            self.subscriber_delivery(bound.get("client_id") or "", _result_of(outcome), seconds)
        match outcome:
            case Complete(result):
                self.completed.labels(result, provider, client).inc()
                if result == ECHO_RESULT:
                    self.echo_ignored.labels(direction, provider, client).inc()
                    self.echo_decisions.labels(direction, "ignored", provider, client).inc()
                elif result in APPLIED_RESULTS:
                    self.echo_decisions.labels(direction, "applied", provider, client).inc()
            case Retry():
                self.retried.labels(provider, client).inc()
            case DeadLetter(reason):
                self.dead_lettered.labels(reason.value, provider, client).inc()
            case Abandon():
                self.abandoned.labels(provider, client).inc()

    def chain_settled(self, other: Callable[[Outcome], None] | None) -> Callable[[Outcome], None]:
        """``settled`` followed by a hook that was already installed."""
        if other is None:
            return self.settled

        def both(outcome: Outcome) -> None:
            self.settled(outcome)
            other(outcome)

        return both

    # --- the ERPs' HTTP (providers.reporting.HttpReporter) ------------------------------------------

    def _connection(self, conn: Connection) -> tuple[str, str]:
        return provider_label(conn.kind), self.client(conn.client_id)

    def answered(self, conn: Connection, method: str, status: int | None, seconds: float) -> None:
        provider, client = self._connection(conn)
        self.erp_seconds.labels(provider).observe(seconds)
        self.erp_requests.labels(provider, client, status_class(status)).inc()

    def rate_limited(self, conn: Connection) -> None:
        self.erp_rate_limited.labels(*self._connection(conn)).inc()

    def waited(self, conn: Connection, seconds: float, limit: Limit) -> None:
        provider, client = self._connection(conn)
        self.erp_rate_waits.labels(provider, client, limit).inc()
        self.erp_rate_wait_seconds.labels(provider, client, limit).inc(seconds)

    # --- the bus ------------------------------------------------------------------------------------

    def bus_sampled_now(self, stats: BusStats) -> None:
        for state in BUS_STATES:
            self.bus_messages.labels(state).set(getattr(stats, state))
        self.bus_dead_lettered.clear()
        for reason, count in stats.dead_lettered_by_reason.items():
            self.bus_dead_lettered.labels(reason).set(count)
        self.bus_sampled.set(time.time())

    # --- hooks for other parts ---------------------------------------------------------------------

    def reconciled(self, client_id: str, result: str, drift: Mapping[str, int] | None = None) -> None:
        """Reconciliation's hook: one scheduled run of a client's reconciliation ended with ``result``
        (``in_step``, ``drift``, ``failed``), ``drift`` the records out of step by entity."""
        client = self.client(client_id)
        self.reconcile_runs.labels(client, result).inc()
        for entity, count in (drift or {}).items():
            self.reconcile_drift.labels(client, entity).set(count)

    def mapping_checked(self, client_id: str, problems: int) -> None:
        """Mapping validation's hook: the client's settings were checked, ``problems`` found."""
        self.mapping_problems.labels(self.client(client_id)).set(problems)

    def subscriber_delivery(self, client_id: str, result: str, seconds: float | None = None) -> None:
        """One delivery message of the webhooks publisher settled with ``result`` (``delivered``,
        ``retry_scheduled``, ``paused``, ``unsubscribed``, ``dead_lettered``, …); ``seconds`` the
        subscriber's answer latency when a call was made. ``settled`` calls it for the publisher's
        messages (they bind ``subscription_id``)."""
        self.publisher_deliveries.labels(self.client(client_id), result).inc()
        if seconds is not None:
            self.publisher_seconds.observe(seconds)


def _result_of(outcome: Outcome) -> str:
    match outcome:
        case Complete(result):
            return result
        case DeadLetter():
            return "dead_lettered"
        case Retry():
            return "retry"
    return "abandoned"


class MeteredPipeline:
    """The worker's pipeline, counted and timed: handled, in flight, handler latency.

    A wrapper rather than an edit to the runner's loop: the runner takes any ``Handler``.
    """

    def __init__(self, inner: Handler, metrics: Metrics) -> None:
        self._inner = inner
        self._metrics = metrics
        self.db = inner.db

    async def handle(self, delivery: Delivery) -> Outcome:
        m = self._metrics
        m.in_flight.inc()
        started = time.perf_counter()
        try:
            return await self._inner.handle(delivery)
        finally:
            provider, client = m.message_labels()
            m.received.labels(provider, client).inc()
            m.handler_seconds.labels(provider).observe(time.perf_counter() - started)
            m.in_flight.dec()
