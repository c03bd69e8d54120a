"""Small parts of observability: bounded labels, when tracing is on, the trace context a message
carries, and the one line when the tracing extra is missing."""

from __future__ import annotations

import sys
import time

import pytest
import structlog

from contracts import DeadLetterReason
from providers import reporting
from providers.http import ConnectionThrottle, HttpResponse
from worker import tracing
from worker.cli.errors import explain
from worker.extras import MissingExtraError
from worker.messaging.outcomes import Complete, DeadLetter
from worker.metrics import ClientLabels, Metrics, provider_label, status_class
from worker.settings import load_settings

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_client_labels_are_capped_and_the_rest_is_other() -> None:
    labels = ClientLabels(2)
    assert [labels(c) for c in ("acme", "globex", "hooli", "acme", None)] == [
        "acme",
        "globex",
        "other",
        "acme",
        "none",
    ]
    assert ClientLabels(0)("acme") == "other"


def test_provider_and_status_labels_are_closed_sets() -> None:
    assert provider_label("tripletex") == "tripletex"
    assert provider_label("x" * 200) == "other"  # a webhook path names anything it likes
    assert provider_label(None) == "none"
    statuses = [200, 201, 302, 401, 403, 404, 429, 503, None]
    assert [status_class(s) for s in statuses] == [
        "2xx",
        "2xx",
        "3xx",
        "auth",
        "auth",
        "4xx",
        "429",
        "5xx",
        "error",
    ]


def test_the_hooks_for_reconciliation_and_the_publisher_count_with_bounded_labels() -> None:
    m = Metrics(max_clients=1)
    m.reconciled("acme", "drift", {"customer": 2})
    m.reconciled("globex", "in_step", {"customer": 0})
    m.mapping_checked("globex", 1)
    m.subscriber_delivery("acme", "delivered", 0.2)
    sample = m.registry.get_sample_value
    assert sample("cwi_reconcile_runs_total", {"client": "acme", "result": "drift"}) == 1
    assert sample("cwi_reconcile_runs_total", {"client": "other", "result": "in_step"}) == 1
    assert sample("cwi_reconcile_drift", {"client": "acme", "entity": "customer"}) == 2
    assert sample("cwi_mapping_problems", {"client": "other"}) == 1
    assert sample("cwi_publisher_deliveries_total", {"client": "acme", "result": "delivered"}) == 1
    assert sample("cwi_publisher_delivery_seconds_count") == 1


def test_a_subscriber_delivery_settled_is_counted_with_its_latency() -> None:
    m = Metrics()
    # worker/publisher/deliver.py binds the delivery's identity and the attempt's latency for its task
    structlog.contextvars.bind_contextvars(
        client_id="acme", subscription_id="sub-1", subscriber_latency_ms=120
    )
    try:
        m.settled(Complete("delivered"))
        m.settled(DeadLetter(DeadLetterReason.RetriesExhausted, "gave up"))
    finally:
        structlog.contextvars.clear_contextvars()
    m.settled(Complete("created"))  # a message of the worker's own: no delivery
    sample = m.registry.get_sample_value
    assert sample("cwi_publisher_deliveries_total", {"client": "acme", "result": "delivered"}) == 1
    assert sample("cwi_publisher_deliveries_total", {"client": "acme", "result": "dead_lettered"}) == 1
    assert sample("cwi_publisher_delivery_seconds_count") == 2
    assert sample("cwi_publisher_delivery_seconds_sum") == pytest.approx(0.24)


@pytest.mark.parametrize(
    ("setting", "endpoint", "wanted"),
    [
        (None, None, None),
        (None, "http://collector:4318", "otlp"),
        ("off", "http://collector:4318", None),
        ("true", None, "otlp"),
        ("console", None, "console"),
        ("", None, None),
    ],
)
def test_tracing_is_off_unless_cwi_tracing_or_an_otlp_endpoint_says_otherwise(
    monkeypatch: pytest.MonkeyPatch, setting: str | None, endpoint: str | None, wanted: str | None
) -> None:
    for name in ("CWI_TRACING", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    if setting is not None:
        monkeypatch.setenv("CWI_TRACING", setting)
    if endpoint is not None:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    assert tracing.wanted(load_settings()) == wanted


def test_metrics_port_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().metrics_port == 9464
    assert load_settings(metrics_port="off").metrics_port is None
    assert load_settings(metrics_port="0").metrics_port == 0


def test_a_missing_tracing_extra_is_one_line_naming_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "worker.tracing_sdk", raising=False)
    with pytest.raises(MissingExtraError) as caught:
        tracing.configure(load_settings(tracing="otlp"))
    assert str(caught.value) == "tracing (otlp) needs the tracing extra: pip install 'cwi[tracing]'"
    assert explain(caught.value) == (str(caught.value), 2)  # what the CLI prints, and its exit code
    assert not tracing.enabled()


def test_the_trace_context_a_message_carries() -> None:
    def trace_id(properties: dict[str, object]) -> str | None:
        context = tracing.carried_context(properties)
        if context is None:
            return None
        from opentelemetry import trace

        return format(trace.get_current_span(context).get_span_context().trace_id, "032x")

    assert trace_id({"traceparent": TRACEPARENT, "envelope_id": "e1"}) == TRACEPARENT.split("-")[1]
    assert trace_id({"Diagnostic-Id": TRACEPARENT}) == TRACEPARENT.split("-")[1]  # the Azure SDK's name
    assert trace_id({"traceparent": "not a traceparent"}) is None
    assert trace_id({"envelope_id": "e1"}) is None


def test_while_tracing_is_off_messages_carry_nothing_and_steps_cost_nothing() -> None:
    assert not tracing.enabled()
    assert tracing.message_properties(**{"cwi.message_id": "e1"}) == {}
    with tracing.step("begin"), tracing.consuming({"traceparent": TRACEPARENT}):
        tracing.annotate(x=1)
        tracing.outcome("created")
    assert tracing.trace_configs() == []


async def test_waits_for_our_cap_and_for_the_erp_s_window_are_reported_per_connection() -> None:
    metrics = Metrics()
    stop = reporting.on_http(metrics)
    try:
        throttle = ConnectionThrottle(1, connection=reporting.Connection("visma_net", "acme"))
        throttle._sent = [
            time.monotonic() - 59.95
        ]  # the minute's one request went a moment short of 60 s ago
        await throttle.acquire()  # waits for our cap (max_requests_per_minute = 1)
        throttle.note(HttpResponse(429, {"Retry-After": "0.05"}, b""))
        throttle._sent.clear()
        await throttle.acquire()  # waits for the ERP's window, which the 429 closed
    finally:
        stop()
    sample = metrics.registry.get_sample_value
    labels = {"provider": "visma_net", "client": "acme"}
    assert sample("cwi_erp_rate_waits_total", {**labels, "limit": "cap"}) == 1
    assert sample("cwi_erp_rate_waits_total", {**labels, "limit": "erp"}) == 1
    assert (sample("cwi_erp_rate_wait_seconds_total", {**labels, "limit": "cap"}) or 0) > 0
    # A throttle that names no connection (a provider built outside a connection) reports nothing.
    await ConnectionThrottle(None).acquire()
    assert sample("cwi_erp_rate_waits_total", {**labels, "limit": "cap"}) == 1
