"""Traces across the bus: one message's whole tree, from where it entered (the listener, or CW's
frontend with its ``traceparent``) through the worker to its settlement, with an in-memory exporter
behind the same scrubbing the real exporter has; and no secret in any span.

The rig is the inbound suite's (tests/integration/test_inbound.py): the real listener on uvicorn,
the worker on the local bus, the sandbox ERP firing signed webhooks, the fake CW.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from contracts import Entity, parse_envelope
from providers.base import ConnectionSpec
from providers.tripletex import TripletexProvider
from tests.fakes import serve_app
from tests.fakes.tripletex import CONSUMER_TOKEN, EMPLOYEE_TOKEN, FakeTripletex
from tests.integration.bus_harness import Harness, bus, receive_n
from tests.integration.provider_contract import change
from tests.integration.test_inbound import API_USER, CW_KEY, TOKEN, Rig, _rig, customer
from tests.integration.tripletex_rig import CREDENTIALS, CUSTOMER, SETTINGS
from worker import tracing
from worker.buses.base import OutgoingMessage
from worker.publisher import messages as publisher_messages
from worker.publisher.messages import DeliveryMessage
from worker.publishing import to_message
from worker.tracing_sdk import provider_with

__all__ = ["bus"]  # the bus behaviour suite's fixture: the local bus and the Service Bus test peer

SQLITE = pytest.mark.parametrize("migrated_db_url", ["sqlite"], indirect=True)


@pytest.fixture
def memory() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(memory: InMemorySpanExporter) -> Iterator[TracerProvider]:
    """Tracing on for the test, every finished span kept in ``memory``."""
    provider = provider_with(memory, batch=False)
    tracing.install(provider)
    try:
        yield provider
    finally:
        tracing.uninstall()
        provider.shutdown()


@pytest.fixture
def spans(memory: InMemorySpanExporter, provider: TracerProvider) -> InMemorySpanExporter:
    return memory


@pytest.fixture
async def rig(migrated_db_url: str, provider: TracerProvider) -> AsyncIterator[Rig]:
    async with _rig(migrated_db_url, ["acme"]) as r:  # opened after tracing: its HTTP client is traced
        r.cw.cw.on_event = _frontend_publisher(r, provider)
        yield r


def _frontend_publisher(rig: Rig, provider: TracerProvider) -> Any:
    """CW as its frontend publishes: a ``traceparent`` of the frontend's own trace in the message's
    application properties (made here with a tracer of our own, as a foreign service would)."""
    frontend = provider.get_tracer("cw-frontend")

    async def publish(event: dict[str, Any]) -> None:
        with frontend.start_as_current_span("frontend save", kind=SpanKind.PRODUCER):
            carrier: dict[str, str] = {}
            TraceContextTextMapPropagator().inject(carrier)
        message = OutgoingMessage(json.dumps(event).encode(), str(uuid.uuid4()), event["client_id"], carrier)
        await rig.app.bus.publish([message])

    return publish


def _trace(spans: list[ReadableSpan], member: ReadableSpan) -> list[ReadableSpan]:
    return [s for s in spans if s.context.trace_id == member.context.trace_id]


def _children(trace: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    span_id = parent.context.span_id
    return [s for s in trace if s.parent is not None and s.parent.span_id == span_id]


def _names(spans: list[ReadableSpan]) -> list[str]:
    return [s.name for s in spans]


def _received(spans: list[ReadableSpan], outcome: str, direction: str) -> list[ReadableSpan]:
    return [
        s
        for s in spans
        if s.name == "receive"
        and s.attributes is not None
        and (s.attributes.get("cwi.outcome"), s.attributes.get("cwi.direction")) == (outcome, direction)
    ]


def _text(spans: list[ReadableSpan]) -> str:
    """Every name, attribute, event and status of the spans, as one text to search for secrets."""
    parts = []
    for span in spans:
        parts += [span.name, span.status.description or "", json.dumps(dict(span.attributes or {}))]
        parts += [f"{e.name} {json.dumps(dict(e.attributes or {}))}" for e in span.events]
    return "\n".join(parts)


def _urls(spans: list[ReadableSpan]) -> list[str]:
    """The URLs of the HTTP spans (the attribute's name depends on the semantic conventions)."""
    return [str((s.attributes or {}).get("url.full") or (s.attributes or {}).get("http.url")) for s in spans]


async def _both_ways(rig: Rig, spans: InMemorySpanExporter) -> list[ReadableSpan]:
    """A customer made in CW (pushed to the ERP), then changed by a user in the ERP (applied to CW)."""
    await rig.cw.cw.user_change("acme", Entity.customer, customer("acme-c1", "Acme AS"))
    await rig.quiet()
    await rig.erp_change("acme", cw_id="acme-c1", data=customer("acme-c1", "Renamed in the ERP"))
    await rig.quiet()
    return list(spans.get_finished_spans())


@SQLITE
async def test_one_webhook_s_whole_tree_from_the_listener_through_the_bus_to_settlement(
    rig: Rig, spans: InMemorySpanExporter
) -> None:
    finished = await _both_ways(rig, spans)

    [applied] = _received(finished, "inbound", "inbound")  # the user's change in the ERP, applied to CW
    trace = _trace(finished, applied)
    [root] = [s for s in trace if s.parent is None]
    assert (root.name, root.kind) == ("POST /webhooks/generic_rest", SpanKind.SERVER)
    assert root.attributes is not None
    assert root.attributes["cwi.client"] == "acme" and root.attributes["http.response.status_code"] == 202
    [publish] = [s for s in _children(trace, root) if s.name == "publish"]
    assert publish.kind is SpanKind.PRODUCER
    assert "db record_receipts" in _names(_children(trace, root))  # the listener's database work
    # The worker's span continues the listener's through the message's properties on the bus.
    assert _children(trace, publish) == [applied] and applied.kind is SpanKind.CONSUMER
    attributes = applied.attributes or {}
    assert publish.attributes is not None
    assert attributes["cwi.message_id"] == publish.attributes["cwi.message_id"]
    assert (attributes["cwi.client"], attributes["cwi.provider"]) == ("acme", "generic_rest")
    assert attributes["messaging.message.id"] == publish.attributes["messaging.message.id"]

    steps = _children(trace, applied)
    assert {"begin", "apply", "settle"} <= set(_names(steps))
    by_name = {s.name: s for s in steps}
    assert any(s.name.startswith("db") for s in _children(trace, by_name["begin"]))
    assert any(s.name.startswith("db") for s in _children(trace, by_name["settle"]))
    calls = [s for s in _children(trace, by_name["apply"]) if s.kind is SpanKind.CLIENT]
    urls = _urls(calls)
    assert any(url.startswith(rig.cw.write_url) for url in urls), urls  # CW's Write API, an HTTP span

    # CW's event of that write carries the frontend's trace context: the worker joins that trace.
    [echo] = _received(finished, "echo_ignored", "outbound")
    [frontend] = [s for s in _trace(finished, echo) if s.parent is None]
    assert frontend.name == "frontend save" and _children(_trace(finished, echo), frontend) == [echo]


@SQLITE
async def test_a_cw_event_s_push_is_traced_in_the_frontend_s_trace_down_to_the_erp_call(
    rig: Rig, spans: InMemorySpanExporter
) -> None:
    await rig.cw.cw.user_change("acme", Entity.customer, customer("acme-c1", "Acme AS"))
    await rig.quiet()
    finished = list(spans.get_finished_spans())

    [pushed] = _received(finished, "created", "outbound")
    trace = _trace(finished, pushed)
    [root] = [s for s in trace if s.parent is None]
    assert root.name == "frontend save" and _children(trace, root) == [pushed]
    steps = {s.name: s for s in _children(trace, pushed)}
    assert {"begin", "push", "settle"} <= set(steps)
    [put] = [s for s in _children(trace, steps["push"]) if s.kind is SpanKind.CLIENT]
    assert put.name == "PUT" and (put.attributes or {}).get("http.response.status_code", 201) == 201
    # Our push came back as the ERP's webhook: a trace of its own, from the listener, ignored.
    [echo] = _received(finished, "echo_ignored", "inbound")
    assert [s.name for s in _trace(finished, echo) if s.parent is None] == ["POST /webhooks/generic_rest"]


@SQLITE
async def test_no_secret_in_any_span(rig: Rig, spans: InMemorySpanExporter) -> None:
    text = _text(await _both_ways(rig, spans))
    subscription = rig.sandboxes["acme"].sandbox.webhooks.subscription
    assert subscription is not None
    url_token = subscription.url.rsplit("/", 1)[1]
    assert len(url_token) > 10
    for secret in (TOKEN, CW_KEY, url_token, subscription.secret):
        assert secret not in text
    assert not re.search(r"/webhooks/generic_rest/(?!\{token\})", text), "a webhook URL with its token"
    assert API_USER in text or "acme" in text  # the spans do hold the message's identity


async def test_a_vendor_s_tokens_in_a_url_query_never_reach_a_span(spans: InMemorySpanExporter) -> None:
    fake = FakeTripletex()
    async with serve_app(fake.app()) as url:
        fake.base_url = f"{url}/v2"
        spec = ConnectionSpec("acme", "tripletex", fake.base_url, SETTINGS, CREDENTIALS)
        async with aiohttp.ClientSession(trace_configs=tracing.trace_configs()) as http:
            await TripletexProvider(spec, http).push(change(CUSTOMER))
    finished = list(spans.get_finished_spans())
    urls = [
        str((s.attributes or {}).get("url.full") or (s.attributes or {}).get("http.url")) for s in finished
    ]
    assert any(u.endswith("/token/session/:create") for u in urls), (
        urls
    )  # the call that has them in its query
    text = _text(finished)
    assert CONSUMER_TOKEN not in text and EMPLOYEE_TOKEN not in text


async def test_the_trace_context_crosses_each_bus_in_the_message_s_properties(
    bus: Harness, spans: InMemorySpanExporter
) -> None:
    envelope = parse_envelope(
        json.dumps(
            {
                "id": "e1",
                "client_id": "acme",
                "type": "customer.created",
                "source": "operator",
                "occurred_at": "2026-11-23T10:00:00Z",
                "data": customer("acme-c1", "Acme AS"),
            }
        )
    )
    await bus.bus.publish([to_message(envelope)])  # as `cwi send` does: a trace of its own starts
    [delivery] = await receive_n(bus, 1)
    await bus.bus.complete(delivery)
    [publish] = spans.get_finished_spans()
    context = tracing.carried_context(delivery.properties)
    assert context is not None
    carried = trace.get_current_span(context).get_span_context()
    assert (carried.trace_id, carried.span_id) == (publish.context.trace_id, publish.context.span_id)


def test_a_subscriber_s_delivery_message_continues_the_trace_of_the_change_it_delivers(
    provider: TracerProvider, spans: InMemorySpanExporter
) -> None:
    message = DeliveryMessage(
        id="d1",
        client_id="acme",
        subscription_id="sub-1",
        event_id="e1",
        event_type="customer.created",
        entity="customer",
        record_id="acme-c1",
        payload="{}",
        created_at=dt.datetime.now(dt.UTC),
    )
    with provider.get_tracer("test").start_as_current_span("receive") as receiving:
        outgoing = publisher_messages.first(message)
    context = tracing.carried_context(outgoing.properties)
    assert context is not None
    carried = trace.get_current_span(context).get_span_context()
    [publish] = [s for s in spans.get_finished_spans() if s.name == "publish"]
    assert carried.span_id == publish.context.span_id
    assert carried.trace_id == receiving.get_span_context().trace_id
