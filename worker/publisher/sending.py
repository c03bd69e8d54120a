"""One call to a subscriber: signed, through the SSRF-guarded connector, no redirects, bounded.

The answer is kept as the delivery log shows it: the HTTP status (or what went wrong before one),
the latency, the start of the body (secrets masked) and any ``Retry-After``.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp

from providers.http import retry_after_seconds
from worker.logging import redactor
from worker.publisher import guard, signing
from worker.publisher.guard import EndpointRefused
from worker.publisher.settings import PublisherSettings

EXCERPT_BYTES = 512


@dataclass(frozen=True, slots=True)
class Attempt:
    at: dt.datetime
    status: int | None
    error: str | None
    latency_ms: int
    excerpt: str | None = None
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def gone(self) -> bool:
        """410 Gone: the subscriber says it no longer wants these calls."""
        return self.status == 410

    @property
    def throttled(self) -> bool:
        """Too many calls: the subscriber is up; not a failure that pauses it."""
        return self.status == 429

    @property
    def summary(self) -> str:
        if self.status is None:
            return self.error or "failed"
        text = f"HTTP {self.status}"
        if self.error:
            text += f" ({self.error})"
        return f"{text}: {self.excerpt}" if self.excerpt else text


def _excerpt(raw: bytes) -> str | None:
    text = raw.decode("utf-8", "replace").strip()
    return redactor.scrub(text[:EXCERPT_BYTES]) if text else None


class Sender:
    """Owns the HTTP session of deliveries (its connector resolves through the guard)."""

    def __init__(self, settings: PublisherSettings) -> None:
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            resolver = guard.GuardedResolver(allow_private=self.settings.allow_private)
            connector = aiohttp.TCPConnector(resolver=resolver, limit=100, ttl_dns_cache=60)
            timeout = aiohttp.ClientTimeout(total=self.settings.timeout_s)
            # trust_env off: a proxy from the environment would connect on our behalf, unchecked.
            # No cookies kept: one subscriber's cookie would go to every subscription on its host.
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=timeout,
                trust_env=False,
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, url: str, webhook_id: str, body: str, secrets: Sequence[str]) -> Attempt:
        at = dt.datetime.now(dt.UTC)
        started = time.monotonic()

        def elapsed() -> int:
            return int((time.monotonic() - started) * 1000)

        s = self.settings
        try:
            guard.check_url(url, allow_http=s.allow_http, allow_private=s.allow_private)
            headers = signing.headers(secrets, webhook_id, at, body)
            async with self._open().post(
                url, data=body.encode("utf-8"), headers=headers, allow_redirects=False
            ) as resp:
                raw = await resp.content.read(EXCERPT_BYTES * 4)
                note = None
                if 300 <= resp.status < 400:
                    note = f"redirect to {resp.headers.get('Location', '?')} not followed"
                wait = retry_after_seconds(resp.headers) if resp.status in (429, 503) else None
                return Attempt(at, resp.status, note, elapsed(), _excerpt(raw), wait)
        except EndpointRefused as exc:
            return Attempt(at, None, str(exc), elapsed())
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, EndpointRefused):
                return Attempt(at, None, str(exc.os_error), elapsed())
            return Attempt(at, None, f"cannot connect: {exc.os_error.strerror or exc}", elapsed())
        except TimeoutError:
            return Attempt(at, None, f"no answer within {s.timeout_s:g} s", elapsed())
        except aiohttp.ClientError as exc:
            return Attempt(at, None, redactor.scrub(f"{exc.__class__.__name__}: {exc}"), elapsed())
