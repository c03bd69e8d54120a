"""The schema-driven part: schemathesis, as a library, runs every operation of the document with
generated requests (its examples, coverage, fuzzing and stateful phases, bounded) and checks each
answer: status documented, body and headers as the schema says, valid data accepted, invalid data
refused, no server errors. Each failure becomes a finding with its request and answer.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from schemathesis import engine
from schemathesis.engine import events

import worker.conformance.hooks  # noqa: F401 - registers the interface's hooks
from contracts.interface import load_document
from worker.conformance.kit import Options
from worker.conformance.report import CheckResult, Exchange, excerpt

# Schema-valid data may still be refused with 422 for a rule of *Records and rules* (a business
# rule, a reused key): the document says so, and the answer's schema (RuleError) names the rule.
ACCEPTED_FOR_VALID_DATA = ["2xx", "401", "403", "404", "409", "422", "429"]
_SHOWN = ("content-type", "idempotency-key", "retry-after", "allow")


def config(options: Options) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "base-url": options.url.rstrip("/"),
        "headers": {"Authorization": f"Bearer {options.token}"},
        "generation": {"max-examples": options.examples},
        "checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED_FOR_VALID_DATA}},
    }
    if options.seed is not None:
        settings["seed"] = options.seed
    return settings


def run_schemathesis(options: Options) -> CheckResult:
    """Blocking (schemathesis speaks requests): run it in a thread."""
    result = CheckResult("schema-driven", "schemathesis: every operation and status code, generated requests")
    if options.examples <= 0:
        result.skip("--examples 0")
        return result
    schema = schemathesis.openapi.from_dict(
        load_document(), config=schemathesis.Config.from_dict(config(options))
    ).include(tag=["probe", *options.entities])
    seen: set[tuple[str, str]] = set()
    tested = 0
    for event in engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            tested += len(event.recorder.interactions)
            _collect(event, result, seen, options.token)
        elif isinstance(event, events.NonFatalError | events.FatalError):
            result.fail(f"schemathesis could not run: {_error_text(event)}", "the document must be testable")
    result.note = f"{tested} generated requests"
    return result


def _collect(
    event: events.ScenarioFinished, result: CheckResult, seen: set[tuple[str, str]], token: str
) -> None:
    recorder = event.recorder
    for case_id, checks in recorder.checks.items():
        for check in checks:
            info = check.failure_info
            if info is None:
                continue
            failure = info.failure
            key = (recorder.label or "", failure.title)
            if key in seen:  # one finding per operation and kind of failure
                continue
            seen.add(key)
            interaction = recorder.interactions.get(case_id)
            exchange = _exchange(interaction, token) if interaction is not None else None
            message = f"{recorder.label}: {failure.title}"
            detail = (failure.message or "").strip().splitlines()
            if detail:
                message += f" ({detail[0]})"
            result.fail(message, f"schemathesis check {check.name} against the document", exchange)


def _exchange(interaction: Any, token: str) -> Exchange:
    request, response = interaction.request, interaction.response
    headers = {
        k: ("Bearer ***" if k.lower() == "authorization" else v) for k, v in dict(request.headers).items()
    }
    body = request.body.decode("utf-8", "replace") if request.body else None
    if response is None:
        return Exchange(request.method, request.uri, headers, body, None, {}, None)
    shown = {k: v for k, v in dict(response.headers).items() if k.lower() in _SHOWN}
    shown = {k: (v[0] if isinstance(v, list) and v else v) for k, v in shown.items()}
    text = response.content.decode("utf-8", "replace") if response.content else None
    if text and token:
        text = text.replace(token, "***")
    return Exchange(
        request.method,
        request.uri,
        headers,
        body,
        response.status_code,
        shown,
        excerpt(text) if text else None,
    )


def _error_text(event: events.NonFatalError | events.FatalError) -> str:
    info = getattr(event, "info", None)
    message = getattr(info, "message", None) or getattr(event, "exception", None) or event
    return str(message).splitlines()[0]
