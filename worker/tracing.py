"""Traces (OpenTelemetry): one trace per event, from where it enters to its settlement.

A trace starts where an event enters: the listener (``entering``, one webhook call), ``cwi send``
(each envelope), or upstream, where CW's frontend put a W3C ``traceparent`` in the message's
application properties. It travels through the bus in those properties (``message_properties``
writes them when a message is made, ``consuming`` reads them; both buses carry them, and a delayed
retry keeps them), so that the worker's spans join it: ``receive`` → ``begin``, ``push`` or
``apply`` (each ERP or CW call an HTTP span of aiohttp's instrumentation), database work,
``settle``; the attributes name the message, client, provider and outcome.

Off unless CWI_TRACING or OTEL_EXPORTER_OTLP_ENDPOINT is set: then every helper here creates
nothing and costs a function call. The SDK and the exporter are the ``tracing`` extra
(``worker.tracing_sdk``). No secret reaches a span: URLs lose their query and credentials (Tripletex
sends its tokens in the query), the webhook URL's token is never recorded, and every exported
string goes through the log redactor.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from worker.logging import get_contextvars, redactor

if TYPE_CHECKING:
    import aiohttp

    from worker.settings import Settings

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
DIAGNOSTIC_ID = "Diagnostic-Id"
"""The Azure SDK's older name for an application property holding a traceparent."""

_W3C = TraceContextTextMapPropagator()
# The message's identity as dispatch binds it for its log lines (worker.messaging.dispatch) → span
# attributes; read when the message is settled, so that one place names a message.
_MESSAGE_ATTRIBUTES = {
    "message_id": "cwi.message_id",
    "client_id": "cwi.client",
    "provider": "cwi.provider",
    "type": "cwi.type",
    "direction": "cwi.direction",
}


class _State:
    tracer: trace.Tracer | None = None
    provider: trace.TracerProvider | None = None


_state = _State()


def enabled() -> bool:
    return _state.tracer is not None


def install(provider: trace.TracerProvider) -> None:
    """Trace through ``provider`` from now on (``configure`` does this from the environment; tests
    give an SDK provider with an in-memory exporter)."""
    _state.provider = provider
    _state.tracer = provider.get_tracer("cwi")


def uninstall() -> None:
    _state.tracer = _state.provider = None


def wanted(settings: Settings) -> str | None:
    """The exporter asked for (``otlp``, ``console``), or None when tracing is off."""
    if settings.tracing == "off":
        return None
    if settings.tracing is not None:
        return settings.tracing
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    )
    return "otlp" if endpoint else None


def configure(settings: Settings) -> None:
    """Switch tracing on when the environment asks for it (once per process)."""
    mode = wanted(settings)
    if mode is None or enabled():
        return
    from worker.extras import extra_needed

    with extra_needed(f"tracing ({mode})"):  # MissingExtraError: one line naming the pip command
        from worker.tracing_sdk import provider_for
    install(provider_for(mode))


def trace_configs() -> list[aiohttp.TraceConfig]:
    """For the worker's HTTP session: a span for every request (none while tracing is off)."""
    if _state.provider is None:
        return []
    from worker.tracing_sdk import http_trace_config

    return [http_trace_config(_state.provider)]


def _clean(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {k: redactor.scrub(v) if isinstance(v, str) else v for k, v in attributes.items() if v is not None}


@contextmanager
def _span(name: str, kind: SpanKind, parent: Context | None, attributes: Mapping[str, Any]) -> Iterator[None]:
    tracer = _state.tracer
    if tracer is None:
        yield
        return
    with tracer.start_as_current_span(
        name,
        context=parent,
        kind=kind,
        attributes=_clean(attributes),
        record_exception=False,  # an exception's text may quote what a secret-free span must not hold
        set_status_on_exception=False,
    ) as span:
        try:
            yield
        except BaseException as exc:
            span.set_status(Status(StatusCode.ERROR, exc.__class__.__name__))
            raise


def _recording() -> bool:
    return trace.get_current_span().is_recording()


_OFF: AbstractContextManager[None] = nullcontext()
"""What the helpers below give while tracing is off: no generator made and stepped per call."""


def step(name: str, **attributes: Any) -> AbstractContextManager[None]:
    """A span for one step of work already being traced (none outside a trace: a poll of an idle
    bus or the housekeeping never starts a trace of its own)."""
    if _state.tracer is None or not _recording():
        return _OFF
    return _span(name, SpanKind.INTERNAL, None, attributes)


def annotate(**attributes: Any) -> None:
    """Attributes on the current span (None values are left out)."""
    if _state.tracer is not None:
        trace.get_current_span().set_attributes(_clean(attributes))


def carried_context(properties: Mapping[str, Any]) -> Context | None:
    """The trace context a message carries in its application properties, if any."""
    carrier = {k: str(v) for k, v in properties.items() if k in (TRACEPARENT, TRACESTATE) and v is not None}
    if TRACEPARENT not in carrier and properties.get(DIAGNOSTIC_ID):
        carrier[TRACEPARENT] = str(properties[DIAGNOSTIC_ID])
    if TRACEPARENT not in carrier:
        return None
    context = _W3C.extract(carrier)
    return context if trace.get_current_span(context).get_span_context().is_valid else None


def message_properties(**attributes: Any) -> dict[str, str]:
    """The properties a new bus message carries to continue the current trace (or to start one):
    a ``publish`` span is made under the current span, or as the root of a new trace."""
    if _state.tracer is None:
        return {}
    carrier: dict[str, str] = {}
    with _span("publish", SpanKind.PRODUCER, None, {"messaging.operation.type": "create", **attributes}):
        _W3C.inject(carrier)
    return carrier


def entering(name: str, headers: Mapping[str, str], **attributes: Any) -> AbstractContextManager[None]:
    """The span of a call that brings events in (the listener's webhook call); a ``traceparent``
    header from the caller continues the caller's trace."""
    if _state.tracer is None:
        return _OFF
    return _span(name, SpanKind.SERVER, carried_context(headers), attributes)


def consuming(properties: Mapping[str, Any], **attributes: Any) -> AbstractContextManager[None]:
    """The ``receive`` span of one delivery, in the trace its properties carry (a new one if none);
    when it ends it takes the message's identity as dispatch bound it (id, client, provider)."""
    if _state.tracer is None:
        return _OFF
    return _consuming(properties, attributes)


@contextmanager
def _consuming(properties: Mapping[str, Any], attributes: Mapping[str, Any]) -> Iterator[None]:
    parent = carried_context(properties)
    with _span("receive", SpanKind.CONSUMER, parent, {"messaging.operation.type": "process", **attributes}):
        try:
            yield
        finally:
            bound = get_contextvars()
            annotate(**{name: bound.get(key) for key, name in _MESSAGE_ATTRIBUTES.items()})


def outcome(result: str) -> None:
    """The message's outcome on the current span (the ``receive`` span when called at settlement)."""
    if _state.tracer is None:
        return
    span = trace.get_current_span()
    span.set_attribute("cwi.outcome", result)
    if result.startswith("dead:") or result in ("settle_failed", "lock_lost"):
        span.set_status(Status(StatusCode.ERROR, result))
