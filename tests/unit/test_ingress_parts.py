"""The listener's small parts: the rate limiter, the parser and secret registry, the worker metrics."""

from __future__ import annotations

import base64

import structlog

from contracts import DeadLetterReason
from providers.generic_rest.webhooks import decode_secret
from providers.registry import KINDS, WEBHOOK_PARSERS, WEBHOOK_SECRETS
from worker.ingress.ratelimit import RateLimiter
from worker.messaging.outcomes import Abandon, Complete, DeadLetter, Outcome, Retry
from worker.metrics import Metrics


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_refills_at_its_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(2.0, 3, clock=clock)
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a") == 0.5  # one call per 0.5 s
    assert limiter.take("b") == 0.0  # each key its own bucket
    clock.now = 0.5
    assert limiter.take("a") == 0.0
    clock.now = 100.0
    assert [limiter.take("a") for _ in range(4)][-1] > 0  # refilled to the burst, not beyond


def test_every_provider_kind_has_a_webhook_parser_and_a_secret_of_its_scheme() -> None:
    assert set(WEBHOOK_PARSERS) == set(WEBHOOK_SECRETS) == set(KINDS)
    generic = WEBHOOK_SECRETS["generic_rest"]()
    assert generic.startswith("whsec_") and len(decode_secret(generic)) == 24
    assert WEBHOOK_SECRETS["tripletex"]() != WEBHOOK_SECRETS["tripletex"]()
    base64.urlsafe_b64decode(WEBHOOK_SECRETS["visma_net"]() + "=")


def test_outcomes_feed_the_worker_counters_labelled_by_provider_and_client() -> None:
    m = Metrics()
    seen: list[Outcome] = []
    hook = m.chain_settled(seen.append)
    # dispatch binds the message's identity for its task; the hook reads it there
    structlog.contextvars.bind_contextvars(client_id="acme", provider="tripletex", direction="inbound")
    try:
        for outcome in (
            Complete("created"),
            Complete("echo_ignored"),
            Retry(60, 2, "timeout"),
            DeadLetter(DeadLetterReason.InvalidEnvelope, "bad"),
            Abandon("shutdown"),
        ):
            hook(outcome)
    finally:
        structlog.contextvars.clear_contextvars()
    sample = m.registry.get_sample_value
    labels = {"provider": "tripletex", "client": "acme"}
    assert sample("cwi_worker_completed_total", {"result": "created", **labels}) == 1
    assert sample("cwi_worker_echo_ignored_total", {"direction": "inbound", **labels}) == 1
    decisions = {"direction": "inbound", **labels}
    assert sample("cwi_worker_echo_decisions_total", {"decision": "ignored", **decisions}) == 1
    assert sample("cwi_worker_echo_decisions_total", {"decision": "applied", **decisions}) == 1
    assert sample("cwi_worker_retried_total", labels) == 1
    assert sample("cwi_worker_dead_lettered_total", {"reason": "InvalidEnvelope", **labels}) == 1
    assert sample("cwi_worker_abandoned_total", labels) == 1
    assert len(seen) == 5


def test_each_metrics_object_has_its_own_registry() -> None:
    a, b = Metrics(), Metrics()
    a.webhooks_received.labels("tripletex").inc()
    assert a.registry.get_sample_value("cwi_webhooks_received_total", {"provider": "tripletex"}) == 1
    assert b.registry.get_sample_value("cwi_webhooks_received_total", {"provider": "tripletex"}) is None
