"""The OpenTelemetry SDK side of ``worker.tracing`` (the ``tracing`` extra): the tracer provider, its
exporter behind the redactor, and the aiohttp client spans. Imported only once tracing is on.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import aiohttp
import yarl
from opentelemetry.instrumentation.aiohttp_client import create_trace_config
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import Status
from opentelemetry.trace import TracerProvider as ApiTracerProvider
from opentelemetry.util.types import Attributes

from worker.logging import redactor


def _scrub_attributes(attributes: Attributes) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in (attributes or {}).items():
        if isinstance(value, str):
            out[key] = redactor.scrub(value)
        elif isinstance(value, Sequence) and not isinstance(value, bytes | str):
            out[key] = [redactor.scrub(v) if isinstance(v, str) else v for v in value]
        else:
            out[key] = value
    return out


def _scrubbed(span: ReadableSpan) -> ReadableSpan:
    # A copy rather than a change: finished spans are read-only, and this is the last point every
    # span passes before it leaves the process (the SDK offers no hook that may still change it).
    status = span.status
    description = redactor.scrub(status.description) if status.description else None
    return ReadableSpan(
        name=redactor.scrub(span.name),
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=_scrub_attributes(span.attributes),  # type: ignore[arg-type]
        events=[
            Event(e.name, _scrub_attributes(e.attributes), e.timestamp)  # type: ignore[arg-type]
            for e in span.events
        ],
        links=span.links,
        kind=span.kind,
        status=Status(status.status_code, description),
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class Scrubbing(SpanExporter):
    """An exporter that masks every secret the log redactor knows in every name, attribute, event
    and status, then hands the spans on."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.inner.export([_scrubbed(span) for span in spans])

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def provider_with(exporter: SpanExporter, *, batch: bool = True) -> TracerProvider:
    """A tracer provider exporting through ``exporter`` (scrubbed); ``batch`` False exports each span
    as it ends (tests)."""
    name = os.environ.get("OTEL_SERVICE_NAME") or "cwi"
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    scrubbing = Scrubbing(exporter)
    provider.add_span_processor(BatchSpanProcessor(scrubbing) if batch else SimpleSpanProcessor(scrubbing))
    return provider


def provider_for(mode: str) -> TracerProvider:
    """``otlp``: OTLP over HTTP, configured by the standard OTEL_EXPORTER_OTLP_* variables;
    ``console``: each span as JSON on stderr."""
    if mode == "console":
        return provider_with(ConsoleSpanExporter(out=sys.stderr))
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return provider_with(OTLPSpanExporter())


def _bare_url(url: yarl.URL) -> str:
    """The URL as a span may hold it: no query (Tripletex sends its tokens there), no user or password."""
    return redactor.scrub(str(url.with_query(None).with_fragment(None).with_user(None)))


def http_trace_config(provider: ApiTracerProvider) -> aiohttp.TraceConfig:
    return create_trace_config(url_filter=_bare_url, tracer_provider=provider)
