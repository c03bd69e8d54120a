"""HTTP plumbing shared by every provider: error classification, Retry-After, rate cap, redaction."""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from providers.errors import AuthenticationFailed, ProviderRejected, TransientError

SECRET_HEADERS = frozenset({"authorization", "companykey", "x-api-key", "cookie", "proxy-authorization"})


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def text(self, limit: int = 500) -> str:
        return self.body[:limit].decode("utf-8", "replace")


def retry_after_seconds(headers: Mapping[str, str], *fallback_headers: str) -> float | None:
    """Seconds to wait from ``Retry-After`` (delta or HTTP date) or a vendor reset header."""
    for name in ("Retry-After", *fallback_headers):
        raw = headers.get(name)
        if raw is None:
            continue
        raw = raw.strip()
        try:
            return max(0.0, float(raw))
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            continue
        return max(0.0, when.timestamp() - time.time())
    return None


async def send(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    json_body: Any = None,
    data: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
    timeout_s: float = 30.0,
) -> HttpResponse:
    """One request; network failures and timeouts become TransientError."""
    try:
        async with session.request(
            method,
            url,
            headers=headers,
            json=json_body,
            data=data,
            params=params,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as resp:
            body = await resp.read()
            return HttpResponse(resp.status, resp.headers, body)
    except TimeoutError:
        raise TransientError(f"{method} {url} timed out after {timeout_s:g} s") from None
    except aiohttp.ClientError as exc:
        raise TransientError(f"{method} {url} failed: {exc.__class__.__name__}: {exc}") from None


def raise_for_status(
    resp: HttpResponse,
    what: str,
    *,
    describe: Any = None,
    reset_headers: tuple[str, ...] = (),
) -> None:
    """Turn an error status into the typed error. ``describe(resp)`` gives the vendor's own text."""
    if resp.status < 400:
        return
    detail = describe(resp) if describe is not None else None
    detail = detail or resp.text() or f"HTTP {resp.status}"
    if resp.status in (408, 429) or resp.status >= 500:
        raise TransientError(
            f"{what}: HTTP {resp.status}: {detail}",
            retry_after=retry_after_seconds(resp.headers, *reset_headers),
        )
    if resp.status in (401, 403):
        raise AuthenticationFailed(f"{what}: HTTP {resp.status}: {detail}")
    raise ProviderRejected(f"{what}: HTTP {resp.status}: {detail}")


class RequestRateCap:
    """At most ``per_minute`` requests in any 60 s window for one connection (sliding window)."""

    def __init__(self, per_minute: int | None) -> None:
        self.per_minute = per_minute
        self._sent: list[float] = []
        self._lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: Mapping[str, str]) -> RequestRateCap:
        raw = settings.get("max_requests_per_minute")
        if raw in (None, ""):
            return cls(None)
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if value <= 0:
            from providers.errors import MappingError

            raise MappingError(f"setting max_requests_per_minute must be a positive integer, not {raw!r}")
        return cls(value)

    async def acquire(self) -> None:
        if self.per_minute is None:
            return
        async with self._lock:
            while True:
                now = time.monotonic()
                self._sent = [t for t in self._sent if now - t < 60.0]
                if len(self._sent) < self.per_minute:
                    self._sent.append(now)
                    return
                await asyncio.sleep(60.0 - (now - self._sent[0]))


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers for display: secret values replaced, so previews and logs never show them."""
    return {k: ("***" if k.lower() in SECRET_HEADERS else v) for k, v in headers.items()}
