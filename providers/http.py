"""HTTP plumbing shared by every provider: error classification, Retry-After, the connection's
throttle (our rate cap and the ERP's window), the token cache, redaction."""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from providers import reporting, secrets
from providers.base import CanonicalJson
from providers.errors import AuthenticationFailed, ProviderRejected, TransientError
from providers.settings import SettingsReader

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
        # Not JSON, or nested past the interpreter's recursion limit. Caught, not scanned for first
        # (jsontext.loads): every answer of the message path passes here.
        except (ValueError, RecursionError):
            return None

    def text(self, limit: int = 500) -> str:
        return self.body[:limit].decode("utf-8", "replace")


MAX_WAIT_HINT_S = 86_400.0
"""The longest wait an answer's header is taken at (a day: no vendor's rate window is longer). A
larger one (``Retry-After: 1e12``, a date in the year 9999) is a broken header; taken as it is, the
retry would be scheduled beyond what a date can hold, fail, and cost the message its deliveries."""


def _wait_hint(seconds: float) -> float | None:
    """A header's wait, within 0 and ``MAX_WAIT_HINT_S``; None for one that is not a number (nan)."""
    if math.isnan(seconds):
        return None
    return min(max(0.0, seconds), MAX_WAIT_HINT_S)


def retry_after_seconds(headers: Mapping[str, str], *fallback_headers: str) -> float | None:
    """Seconds to wait from ``Retry-After`` (delta or HTTP date) or a vendor reset header, at most
    ``MAX_WAIT_HINT_S``."""
    for name in ("Retry-After", *fallback_headers):
        raw = headers.get(name)
        if raw is None:
            continue
        raw = raw.strip()
        try:
            seconds = float(raw)
        except ValueError:
            try:
                seconds = email.utils.parsedate_to_datetime(raw).timestamp() - time.time()
            except (TypeError, ValueError, OverflowError):
                continue
        if (wait := _wait_hint(seconds)) is not None:
            return wait
    return None


MAX_ANSWER_BYTES = 32 * 1024 * 1024
"""How much of an answer is read at most (after decompression). An ERP's page of a thousand records is
a few megabytes; a server streaming for the whole timeout (or a compressed bomb) would otherwise be
held in memory whole, and a worker killed by the kernel redelivers everything it held."""


class AnswerTooLarge(TransientError):
    """The answer was bigger than ``MAX_ANSWER_BYTES``: not read further. Transient, as a lost answer
    is: a write may have been made, and the next attempt looks before it writes again."""


async def read_bounded(resp: aiohttp.ClientResponse, what: str) -> bytes:
    """The answer's body, at most ``MAX_ANSWER_BYTES`` of it; AnswerTooLarge beyond."""
    too_large = AnswerTooLarge(
        f"{what}: the answer is over {MAX_ANSWER_BYTES // 2**20} MiB; not read further"
    )
    if resp.content_length is not None and resp.content_length > MAX_ANSWER_BYTES:
        raise too_large
    parts: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_any():
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            raise too_large
        parts.append(chunk)
    return b"".join(parts)


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
    """One request; network failures and timeouts become TransientError. A ``CanonicalJson``
    body goes as it is (aiohttp would encode it again).

    Redirects are not followed, and are a TransientError naming where they lead: followed, a
    redirect to another host took the vendor's key headers with it (aiohttp drops only
    Authorization), and a POST redirected with 302 came back as the answer of a GET, a create
    reported as made. An API behind a redirect is a base URL to correct (``http`` for ``https``)."""
    body: Any = data
    if isinstance(json_body, CanonicalJson):
        headers = {**(headers or {}), "Content-Type": "application/json"}
        body, json_body = bytes(json_body), None
    try:
        async with session.request(
            method,
            url,
            headers=headers,
            json=json_body,
            data=body,
            params=params,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            allow_redirects=False,
        ) as resp:
            if 300 <= resp.status < 400:
                where = resp.headers.get("Location", "nowhere said")[:300]
                raise TransientError(
                    f"{method} {url}: HTTP {resp.status}, a redirect to {where}, not followed "
                    "(is the base URL right?)"
                )
            body = await read_bounded(resp, f"{method} {url}")
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


@dataclass(frozen=True, slots=True)
class RateHeaders:
    """A vendor's rate-limit headers: how many requests are left, and when the window resets
    (seconds from now, or a Unix time); a 429 without either waits ``default_429_wait``."""

    remaining: str = "X-RateLimit-Remaining"
    reset: str = "X-RateLimit-Reset"
    default_429_wait: float | None = None


def reset_seconds(headers: Mapping[str, str], name: str) -> float | None:
    """Seconds until a reset header's time: a delta, or a Unix time (no window is decades long)."""
    try:
        value = float(headers.get(name, ""))
    except ValueError:
        return None
    if value > 1e9:
        value -= time.time()
    return _wait_hint(value)


class ConnectionThrottle:
    """Every request of one connection goes through here, from every task that shares the provider.

    Two limits: our own cap (setting ``max_requests_per_minute``, a sliding 60 s window), and the
    ERP's window, closed by a 429 (until Retry-After or the reset header) or by a response saying
    none are left (remaining 0, until the reset), whatever its status. While the ERP's window is
    closed a request waits for it to reopen, up to ``max_wait_s``; a longer wait is a
    TransientError with ``retry_after``, so the message is retried later instead of holding a slot.

    ``connection`` names whose requests these are in what it reports (``providers.reporting``).
    """

    def __init__(
        self,
        per_minute: int | None,
        headers: RateHeaders = RateHeaders(),
        *,
        max_wait_s: float = 5.0,
        connection: reporting.Connection | None = None,
    ) -> None:
        self.per_minute = per_minute
        self.headers = headers
        self.max_wait_s = max_wait_s
        self.connection = connection
        self._sent: list[float] = []
        self._lock = asyncio.Lock()
        self._closed_until = 0.0

    @classmethod
    def from_settings(
        cls, settings: SettingsReader, headers: RateHeaders = RateHeaders()
    ) -> ConnectionThrottle:
        """The throttle of a connection with setting ``max_requests_per_minute`` (none: no cap)."""
        connection = reporting.Connection(settings.kind, settings.client_id)
        return cls(settings.positive_integer("max_requests_per_minute"), headers, connection=connection)

    @property
    def closed_for(self) -> float:
        """Seconds until the ERP's window reopens (0 when open)."""
        return max(0.0, self._closed_until - time.monotonic())

    async def acquire(self) -> None:
        """Wait for the ERP's window and for our cap; then one request may go."""
        if self.per_minute is None and not self._lock.locked() and self._closed_until <= time.monotonic():
            return  # no cap, the window open, nobody waiting for it: nothing to wait for
        async with self._lock:
            wait = self.closed_for
            if wait > self.max_wait_s:
                raise TransientError(f"rate limit used up for {wait:.0f} s more", retry_after=wait)
            if wait > 0:
                await asyncio.sleep(wait)
                reporting.waited(self.connection, wait, "erp")
            if self.per_minute is None:
                return
            capped = 0.0
            while True:
                now = time.monotonic()
                self._sent = [t for t in self._sent if now - t < 60.0]
                if len(self._sent) < self.per_minute:
                    self._sent.append(now)
                    reporting.waited(self.connection, capped, "cap")
                    return
                pause = 60.0 - (now - self._sent[0])
                await asyncio.sleep(pause)
                capped += pause

    def note(self, resp: HttpResponse) -> float | None:
        """Read the rate headers of any response; return the wait a 429 asks for (None: unknown)."""
        wait: float | None = None
        if resp.status == 429:
            wait = retry_after_seconds(resp.headers)
            if wait is None:
                wait = reset_seconds(resp.headers, self.headers.reset)
            if wait is None:
                wait = self.headers.default_429_wait
        elif resp.headers.get(self.headers.remaining, "").strip() == "0":
            wait = reset_seconds(resp.headers, self.headers.reset)
        if wait:
            self._closed_until = max(self._closed_until, time.monotonic() + wait)
        return wait


async def throttled_send(
    throttle: ConnectionThrottle, session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any
) -> HttpResponse:
    """``send`` through the connection's throttle; a 429's wait becomes the error's ``retry_after``."""
    await throttle.acquire()
    started = time.monotonic()
    try:
        resp = await send(session, method, url, **kwargs)
    except TransientError:
        reporting.answered(throttle.connection, method, None, time.monotonic() - started)
        raise
    reporting.answered(throttle.connection, method, resp.status, time.monotonic() - started)
    wait = throttle.note(resp)
    if resp.status == 429:
        reporting.rate_limited(throttle.connection)
    if resp.status == 429 and wait is not None:
        resp = HttpResponse(resp.status, {**resp.headers, "Retry-After": f"{wait:g}"}, resp.body)
    return resp


@dataclass(frozen=True, slots=True)
class Token:
    """A credential for API calls and how to tell it is still fresh."""

    value: str
    fresh: Callable[[], bool]


def token_lifetime(answered: object, default_s: float) -> float:
    """A token answer's ``expires_in`` in seconds, or ``default_s`` when it is absent or not a
    positive finite number (``"soon"``, ``-5``, ``NaN``). Taken as it came, such a value raised
    ValueError (every push of the connection failed) or left the token never fresh (a token request
    before every call)."""
    try:
        seconds = float(answered)  # type: ignore[arg-type]  # whatever the JSON held
    except (TypeError, ValueError):
        return default_s
    return seconds if math.isfinite(seconds) and seconds > 0 else default_s


def fresh_until(lifetime_s: float, margin_s: float) -> Callable[[], bool]:
    """Fresh for ``lifetime_s`` less ``margin_s`` from now (monotonic clock)."""
    deadline = time.monotonic() + lifetime_s - margin_s
    return lambda: time.monotonic() < deadline


class TokenCache:
    """One connection's token: fetched once, shared by every task, replaced when stale or refused.

    ``call(send)`` sends with the token; on 401 it gets a new token (one refresh however many tasks
    were refused with the same token) and sends once more. A second 401 is returned to the caller,
    who knows which credentials to name.
    """

    def __init__(self, fetch: Callable[[], Awaitable[Token]]) -> None:
        self._fetch = fetch
        self._token: Token | None = None
        self._lock = asyncio.Lock()

    async def get(self, *, refused: str | None = None) -> str:
        async with self._lock:
            current = self._token
            if current is None or current.value == refused or not current.fresh():
                self._token = current = await self._fetch()
                secrets.learned(current.value)
            return current.value

    async def call(self, send: Callable[[str], Awaitable[HttpResponse]]) -> HttpResponse:
        token = await self.get()
        resp = await send(token)
        if resp.status == 401:
            resp = await send(await self.get(refused=token))
        return resp


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers for display: secret values replaced, so previews and logs never show them."""
    return {k: ("***" if k.lower() in SECRET_HEADERS else v) for k, v in headers.items()}
