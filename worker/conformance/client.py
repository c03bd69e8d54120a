"""The kit's HTTP side: every exchange recorded (secrets redacted), 429s honoured, and every answer
checked against the document: a documented status, its schema, its required headers.

Answer validation is a few lines over jsonschema, which the worker already uses: the kit knows
which operation it called, so it needs no request routing (openapi-core would match each URL
against the templated ``{base}`` server first).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from providers.http import AnswerTooLarge, read_bounded, retry_after_seconds
from worker.conformance.report import Exchange, Finding

_URI = "urn:cwi:interface"
_SHOWN_HEADERS = ("content-type", "retry-after", "allow", "idempotency-key", "www-authenticate")
MAX_RETRY_AFTER_S = 30.0


class Document:
    """The interface document, for checking answers: ``problems(template, method, exchange)``."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.document = document
        registry: Registry[Any] = Registry().with_resource(
            _URI, Resource.from_contents(dict(document), default_specification=DRAFT202012)
        )
        self._registry = registry
        self._validators: dict[str, Draft202012Validator] = {}

    def validator(self, ref: str) -> Draft202012Validator:
        """A validator of ``#/components/schemas/…`` (or any local reference)."""
        if ref not in self._validators:
            self._validators[ref] = Draft202012Validator(
                {"$ref": _URI + ref},
                registry=self._registry,
                format_checker=FormatChecker(formats=["date", "date-time"]),
            )
        return self._validators[ref]

    def response(self, template: str, method: str, status: int) -> tuple[str, Mapping[str, Any]] | None:
        """The documented answer for this status (exact, then ``4XX``/``5XX``), and its key."""
        responses = self.document["paths"][template][method.lower()]["responses"]
        for key in (str(status), f"{status // 100}XX", "default"):
            if key in responses:
                return key, self._resolve(responses[key])
        return None

    def problems(self, template: str, method: str, exchange: Exchange) -> list[str]:
        if exchange.status is None:
            return []
        found = self.response(template, method, exchange.status)
        if found is None:
            return [f"HTTP {exchange.status} is not a documented answer of {method} {template}"]
        key, response = found
        out = []
        for name, header in response.get("headers", {}).items():
            header = self._resolve(header)
            if header.get("required") and name.lower() not in {k.lower() for k in exchange.response_headers}:
                out.append(f"HTTP {exchange.status} lacks the required header {name}")
        content = response.get("content", {}).get("application/json")
        if content is None:
            if exchange.response_body and key in ("204",):
                out.append(f"HTTP {exchange.status} must have no body")
            return out
        ctype = exchange.response_headers.get("Content-Type", "")
        if not ctype.startswith("application/json"):
            return [*out, f"HTTP {exchange.status} must be application/json, not {ctype or 'untyped'}"]
        body = exchange.json()
        schema = content["schema"]
        ref = schema.get("$ref") if isinstance(schema, Mapping) else None
        if ref is None:
            return out
        error = best_match(self.validator(ref).iter_errors(body))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "body"
            name = ref.rsplit("/", 1)[1]
            out.append(f"HTTP {exchange.status} answer does not match {name}: {where}: {error.message}")
        return out

    def _resolve(self, node: Mapping[str, Any]) -> Mapping[str, Any]:
        while "$ref" in node:
            target: Any = self.document
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            node = target
        return node


@dataclass(slots=True)
class Sent:
    """What the client recorded beyond the exchanges: the 429s it met, and those without Retry-After."""

    rate_limited: list[Exchange] = field(default_factory=list)
    without_retry_after: list[Exchange] = field(default_factory=list)
    schema_findings: list[Finding] = field(default_factory=list)
    answers: int = 0


class KitClient:
    """Requests to ``{base}`` with the token; each answer is checked against the document."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, token: str, document: Document) -> None:
        self._session = session
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.document = document
        self.sent = Sent()

    async def call(
        self,
        method: str,
        path: str,
        template: str,
        *,
        body: Any = None,
        raw_body: bytes | None = None,
        key: str | None = None,
        token: str | None = "",
        query: Mapping[str, str] | None = None,
        honour_429: bool = True,
    ) -> Exchange:
        """One request (again after a 429, as long as Retry-After says, when ``honour_429``)."""
        headers = {"Accept": "application/json"}
        token = self.token if token == "" else token
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if key is not None:
            headers["Idempotency-Key"] = key
        data = raw_body
        if body is not None:
            data = json.dumps(body).encode()
        if data is not None:
            headers["Content-Type"] = "application/json"
        for _ in range(5):
            exchange = await self._send(method, path, headers, data, query)
            if exchange.status != 429 or not honour_429:
                break
            await self.wait_out(exchange)
        self.sent.answers += 1
        for problem in self.document.problems(template, method, exchange):
            self.sent.schema_findings.append(Finding(problem, _answers_rule(template, method), exchange))
        return exchange

    async def wait_out(self, exchange: Exchange) -> None:
        """Honour a 429: wait Retry-After (at most 30 s); record one without it, and wait 1 s."""
        self.sent.rate_limited.append(exchange)
        wait = retry_after_seconds(exchange.response_headers)
        if wait is None:
            self.sent.without_retry_after.append(exchange)
            wait = 1.0
        await asyncio.sleep(min(wait, MAX_RETRY_AFTER_S))

    async def _send(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        data: bytes | None,
        query: Mapping[str, str] | None,
    ) -> Exchange:
        url = self.base_url + path
        shown_request = {k: ("Bearer ***" if k == "Authorization" else v) for k, v in headers.items()}
        request_text = None if data is None else data.decode("utf-8", "replace")
        try:
            # Redirects not followed: the candidate's own answer is what is checked, and the key
            # goes nowhere else.
            async with self._session.request(
                method,
                url,
                headers=headers,
                data=data,
                params=query,
                timeout=aiohttp.ClientTimeout(total=30),
                allow_redirects=False,
            ) as resp:
                text = (await read_bounded(resp, f"{method} {url}")).decode("utf-8", "replace")
                shown = {k: v for k, v in resp.headers.items() if k.lower() in _SHOWN_HEADERS}
                full_url = str(resp.url)
                return Exchange(method, full_url, shown_request, request_text, resp.status, shown, text)
        except (aiohttp.ClientError, TimeoutError, AnswerTooLarge) as exc:
            text = f"{exc.__class__.__name__}: {exc}"
            return Exchange(method, url, shown_request, request_text, None, {}, text)


def _answers_rule(template: str, method: str) -> str:
    return (
        f"every answer of {method} {template} is documented, with its schema and required headers "
        "(document: paths)"
    )
