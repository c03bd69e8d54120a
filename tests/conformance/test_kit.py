"""``cwi conformance`` against the reference (the sandbox ERP: no failure, no warning) and against
deliberately broken references, each caught by the check for the rule it breaks."""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web

from tests.conformance.conftest import SUBJECT, TOKEN, ThreadServer, sandbox_app
from worker.conformance.report import Report
from worker.conformance.run import Options, run_conformance

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


async def kit(url: str, **options: object) -> Report:
    return await run_conformance(Options(url=url, token=TOKEN, examples=0, **options))  # type: ignore[arg-type]


def result(report: Report, name: str) -> tuple[str, list[str]]:
    [found] = [r for r in report.results if r.name == name]
    return found.status, [f.message for f in found.findings]


@pytest.mark.slow
async def test_the_sandbox_passes_every_check_with_webhooks_and_generated_cases() -> None:
    with ThreadServer(sandbox_app()) as url:

        async def subscribe(webhook_url: str) -> None:
            async with aiohttp.ClientSession() as http:
                body = {"url": webhook_url, "secret": SECRET}
                async with http.post(f"{url}/_sandbox/webhook", json=body) as resp:
                    assert resp.status == 200

        report = await run_conformance(
            Options(
                url=url,
                token=TOKEN,
                examples=5,
                seed=1,
                webhook_listen="127.0.0.1:0",
                webhook_secret=SECRET,
                on_webhook_url=subscribe,
            )
        )
    assert report.failed == [], report.render()
    assert report.subject == SUBJECT
    statuses = {r.name: r.status for r in report.results}
    assert set(statuses.values()) == {"passed"}, statuses  # nothing skipped, nothing failed
    assert report.exit_code == 0
    assert len(statuses) == 12


async def test_a_reference_that_ignores_idempotency_key_is_caught() -> None:
    @web.middleware
    async def fresh_key(request: web.Request, handler: Handler) -> web.StreamResponse:
        if "Idempotency-Key" in request.headers:
            headers = {**request.headers, "Idempotency-Key": str(uuid.uuid4())}
            request = request.clone(headers=headers)
        return await handler(request)

    with ThreadServer(sandbox_app(fresh_key)) as url:
        report = await kit(url)
    status, findings = result(report, "idempotent-replay")
    assert status == "failed"
    assert any("not the stored answer" in f for f in findings), findings
    assert result(report, "key-reuse")[0] == "failed"
    assert report.exit_code == 1


async def test_a_reference_answering_200_to_delete_of_a_missing_record_is_caught() -> None:
    @web.middleware
    async def always_ok(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if request.method == "DELETE" and response.status == 404:
            return web.json_response({}, status=200)
        return response

    with ThreadServer(sandbox_app(always_ok)) as url:
        report = await kit(url)
    status, findings = result(report, "not-found")
    assert status == "failed"
    assert any("DELETE of a customer that never existed: expected HTTP 404, got 200" in f for f in findings)


async def test_a_reference_whose_cursor_skips_is_caught() -> None:
    @web.middleware
    async def skipping(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if request.method == "GET" and request.path.count("/") == 2 and response.status == 200:
            assert isinstance(response, web.Response) and response.body is not None
            page = json.loads(bytes(response.body))  # type: ignore[arg-type]
            if page.get("has_more") and page.get("items"):
                page["items"] = page["items"][:-1]  # the cursor still points past the dropped record
                return web.json_response(page)
        return response

    with ThreadServer(sandbox_app(skipping)) as url:
        report = await kit(url, entities=("customer",))
    status, findings = result(report, "listing")
    assert status == "failed"
    assert any("was listed: never" in f for f in findings), findings
    assert result(report, "records")[0] == "passed"  # only the listing is broken


async def test_a_wrong_base_url_fails_the_probe_and_skips_the_rest(sandbox_url: str) -> None:
    report = await kit(sandbox_url + "/cw")
    status, findings = result(report, "probe")
    assert status == "failed"
    assert "GET /v1/_ping with the token: expected HTTP 200, got 404" in findings
    assert {r.status for r in report.results if r.name != "probe"} == {"skipped"}
    assert report.exit_code == 1


async def test_the_report_never_shows_the_token(sandbox_url: str) -> None:
    report = await kit(sandbox_url + "/cw")
    assert TOKEN not in report.render()
    assert TOKEN not in json.dumps(report.as_json())
    assert "Bearer ***" in report.render()
