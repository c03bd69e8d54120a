"""What a conformance run found: one result per check, each failure with its request, answer and rule."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from contracts import jsontext

Status = Literal["passed", "failed", "skipped"]
_EXCERPT = 600


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request and its answer, secrets redacted, bodies cut to an excerpt."""

    method: str
    url: str
    request_headers: dict[str, str]
    request_body: str | None
    status: int | None
    response_headers: dict[str, str]
    response_body: str | None

    def json(self) -> Any:
        if not self.response_body:
            return None
        try:
            return jsontext.loads(self.response_body)  # a candidate's answer: nesting bounded
        except ValueError:
            return None

    def render(self) -> list[str]:
        lines = [f"    request:  {self.method} {self.url}"]
        lines += [f"              {k}: {v}" for k, v in self.request_headers.items()]
        if self.request_body:
            lines.append(f"              {excerpt(self.request_body, 300)}")
        answer = "no answer" if self.status is None else f"HTTP {self.status}"
        lines.append(f"    answer:   {answer}")
        lines += [f"              {k}: {v}" for k, v in self.response_headers.items()]
        if self.response_body:
            lines.append(f"              {excerpt(self.response_body, 300)}")
        return lines


def excerpt(text: str, limit: int = _EXCERPT) -> str:
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} characters)"


@dataclass(frozen=True, slots=True)
class Finding:
    """One way the implementation breaks the document: what happened, and the rule it breaks."""

    message: str
    rule: str
    exchange: Exchange | None = None


@dataclass(slots=True)
class CheckResult:
    name: str
    title: str
    status: Status = "passed"
    findings: list[Finding] = field(default_factory=list)
    note: str | None = None

    def fail(self, message: str, rule: str, exchange: Exchange | None = None) -> None:
        self.status = "failed"
        self.findings.append(Finding(message, rule, exchange))

    def skip(self, note: str) -> None:
        self.status = "skipped"
        self.note = note


@dataclass(slots=True)
class Report:
    url: str
    interface: str = "v1"
    subject: str | None = None
    results: list[CheckResult] = field(default_factory=list)
    #: the token, replaced by *** wherever an answer quotes it (never part of the output).
    secret: str | None = field(default=None, repr=False)

    def _scrub(self, text: str) -> str:
        # A token shorter than 8 characters cannot be told from ordinary text: left as is.
        return text.replace(self.secret, "***") if self.secret and len(self.secret) >= 8 else text

    @property
    def failed(self) -> list[CheckResult]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def exit_code(self) -> int:
        """0 when every check passed (or was skipped with a reason), 1 when any failed."""
        return 1 if self.failed else 0

    def as_json(self) -> dict[str, Any]:
        """The report as JSON-able data, the token scrubbed from every text in it."""
        data: dict[str, Any] = json.loads(self._scrub(json.dumps(self._data())))
        return data

    def _data(self) -> dict[str, Any]:
        counts = {s: sum(r.status == s for r in self.results) for s in ("passed", "failed", "skipped")}
        return {
            "url": self.url,
            "interface": self.interface,
            "subject": self.subject,
            "summary": counts,
            "checks": [asdict(r) for r in self.results],
        }

    def render(self) -> str:
        lines = [
            f"cwi conformance {self.url} (interface {self.interface}, token subject {self.subject!r})",
            "",
        ]
        mark = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP"}
        for result in self.results:
            detail = f" ({len(result.findings)} finding(s))" if result.findings else ""
            note = f": {result.note}" if result.note else ""
            lines.append(f"{mark[result.status]}  {result.name}: {result.title}{detail}{note}")
        for result in self.failed:
            lines += ["", f"== {result.name}: {result.title}"]
            for n, finding in enumerate(result.findings, 1):
                lines.append(f"  {n}. {finding.message}")
                lines.append(f"    rule:     {finding.rule}")
                if finding.exchange is not None:
                    lines += finding.exchange.render()
        summary = self._data()["summary"]
        lines += [
            "",
            f"{summary['passed']} passed, {summary['failed']} failed, {summary['skipped']} skipped",
        ]
        return self._scrub("\n".join(lines))
