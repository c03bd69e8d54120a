"""One conformance run, check after check, into a Report."""

from __future__ import annotations

import asyncio

import aiohttp

from worker.conformance import checks
from worker.conformance.fuzz import run_schemathesis
from worker.conformance.kit import Kit, Options
from worker.conformance.listing import listing, rate_limit
from worker.conformance.report import CheckResult, Report
from worker.conformance.webhooks import listening, webhooks

__all__ = ["Options", "run_conformance"]


async def run_conformance(options: Options) -> Report:
    report = Report(options.url.rstrip("/"), secret=options.token)
    async with aiohttp.ClientSession() as session:
        kit = Kit(options, session)
        async with listening(kit) as received:
            probe = await checks.probe(kit)
            report.results.append(probe)
            report.subject = kit.subject
            if kit.subject is None:
                # Nothing else can pass where the probe does not answer: say what to fix first.
                for name in (
                    "records",
                    "idempotent-replay",
                    "key-reuse",
                    "key-in-flight",
                    "not-found",
                    "rules",
                    "listing",
                    "webhooks",
                    "schema-driven",
                    "rate-limit",
                ):
                    skipped = CheckResult(name, "not run")
                    skipped.skip("the probe failed: fix the base URL or the token first")
                    report.results.append(skipped)
                return report
            await kit.prepare_parents()
            for check in (
                checks.records,
                checks.replay,
                checks.key_reuse,
                checks.in_flight,
                checks.not_found,
                checks.rules,
                listing,
            ):
                report.results.append(await check(kit))
            report.results.append(await webhooks(kit, received))
        report.results.append(await asyncio.to_thread(run_schemathesis, options))
        report.results.append(await rate_limit(kit))
        report.results.append(_answers(kit))
    return report


def _answers(kit: Kit) -> CheckResult:
    result = CheckResult("answers", "every answer to the kit's own requests as the document says")
    seen: set[str] = set()
    for finding in kit.client.sent.schema_findings:
        if finding.message not in seen:  # the same problem once, with its first example
            seen.add(finding.message)
            result.findings.append(finding)
            result.status = "failed"
    result.note = f"{kit.client.sent.answers} answers checked"
    return result
