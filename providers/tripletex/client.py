"""HTTP and auth for Tripletex: session tokens, Basic auth, rate-limit headers, error bodies."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from providers.base import ConnectionSpec
from providers.errors import AuthenticationFailed, ProviderRejected, TransientError
from providers.http import HttpResponse, RequestRateCap, raise_for_status, retry_after_seconds, send

KIND = "tripletex"
SESSION_DAYS = 2
"""Lifetime we ask for; a token is replaced one day before its expirationDate."""
RESET_HEADER = "X-Rate-Limit-Reset"
PAGE_SIZE = 1000
DEFAULT_429_WAIT = 5.0
"""Tripletex may omit X-Rate-Limit-Reset on the 429 itself; then wait this long."""


def describe_error(resp: HttpResponse) -> str | None:
    """Tripletex's error envelope as "message; field: message; … (requestId …)"."""
    body = resp.json()
    if not isinstance(body, dict):
        return None
    parts = [str(body["message"])] if body.get("message") else []
    for item in body.get("validationMessages") or []:
        if isinstance(item, dict) and item.get("message"):
            field = item.get("field")
            parts.append(f"{field}: {item['message']}" if field else str(item["message"]))
    if not parts and body.get("developerMessage"):
        parts.append(str(body["developerMessage"]))
    request_id = body.get("requestId") or resp.headers.get("x-tlx-request-id")
    text = "; ".join(parts)
    if request_id:
        text = f"{text} (requestId {request_id})" if text else f"requestId {request_id}"
    return text or None


@dataclass(frozen=True, slots=True)
class _Session:
    token: str
    expires: dt.date


def _utc_today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


class TripletexClient:
    """One connection's authenticated HTTP access. Tokens are cached for the instance's life."""

    def __init__(
        self,
        spec: ConnectionSpec,
        http: aiohttp.ClientSession,
        *,
        today: Callable[[], dt.date] = _utc_today,
    ) -> None:
        self.base_url = spec.base_url.rstrip("/")
        self.today = today
        self._spec = spec
        self._http = http
        self._cap = RequestRateCap.from_settings(spec.settings)
        self._company = spec.settings.get("company_id") or "0"
        self._session: _Session | None = None
        self._lock = asyncio.Lock()
        self._blocked_until = 0.0

    def credential(self, name: str) -> str:
        value = self._spec.credentials.get(name)
        if not value:
            raise AuthenticationFailed(
                f"the tripletex connection of client {self._spec.client_id} has no credential {name}: "
                f"add it with `cwi connections set {self._spec.client_id} tripletex --credential {name}=…`"
            )
        return value

    def preview_headers(self) -> dict[str, str]:
        return {"Authorization": "***", "Content-Type": "application/json; charset=utf-8"}

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        allow: tuple[int, ...] = (),
    ) -> HttpResponse:
        """One API request; a 401 gets one fresh session token and one retry.

        Statuses in ``allow`` are returned to the caller instead of raised (404 for lookups, 409).
        """
        token = await self._token()
        resp = await self._send(method, path, token, params, json_body)
        if resp.status == 401:
            token = await self._token(stale=token)
            resp = await self._send(method, path, token, params, json_body)
            if resp.status == 401:
                raise AuthenticationFailed(
                    self._advice(f"{method} {path} was refused with a fresh session token")
                )
        if resp.status not in allow:
            self._raise_for_status(resp, f"{method} {path}")
        return resp

    async def value(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """The ``value`` of a single-object response."""
        resp = await self.call(method, path, **kwargs)
        found: dict[str, Any] = unwrap(resp, "value", f"{method} {path}")
        return found

    async def values(self, path: str, params: Mapping[str, str]) -> list[dict[str, Any]]:
        """Every ``values`` of a list search, page by page (``from``/``count``)."""
        found: list[dict[str, Any]] = []
        start = 0
        while True:
            page_params = {**params, "from": str(start), "count": str(PAGE_SIZE)}
            resp = await self.call("GET", path, params=page_params)
            page = unwrap(resp, "values", f"GET {path}")
            found.extend(v for v in page if isinstance(v, dict))
            start += len(page)
            if len(page) < PAGE_SIZE:
                return found

    async def _send(
        self, method: str, path: str, token: str, params: Mapping[str, str] | None, json_body: Any
    ) -> HttpResponse:
        wait = self._blocked_until - time.monotonic()
        if wait > 0:
            # The last response said the window is used up: another request would only earn a 429.
            raise TransientError(f"tripletex rate limit used up for {wait:.0f} s more", retry_after=wait)
        await self._cap.acquire()
        basic = base64.b64encode(f"{self._company}:{token}".encode()).decode()
        headers = {"Authorization": f"Basic {basic}", "Accept": "application/json"}
        resp = await send(
            self._http, method, self.base_url + path, headers=headers, params=params, json_body=json_body
        )
        self._note_rate_limit(resp)
        return resp

    def _note_rate_limit(self, resp: HttpResponse) -> None:
        if resp.status < 400 and resp.headers.get("X-Rate-Limit-Remaining") == "0":
            reset = retry_after_seconds({"Retry-After": resp.headers.get(RESET_HEADER, "0")})
            self._blocked_until = time.monotonic() + (reset or 0.0)

    def _raise_for_status(self, resp: HttpResponse, what: str) -> None:
        if resp.status == 429:
            wait = retry_after_seconds(resp.headers, RESET_HEADER)
            detail = describe_error(resp) or "rate limit exceeded"
            raise TransientError(
                f"{what}: HTTP 429: {detail}", retry_after=DEFAULT_429_WAIT if wait is None else wait
            )
        raise_for_status(resp, what, describe=describe_error, reset_headers=(RESET_HEADER,))

    async def _token(self, stale: str | None = None) -> str:
        async with self._lock:
            current = self._session
            fresh_until = current.expires - dt.timedelta(days=1) if current else None
            if current and current.token != stale and fresh_until and self.today() < fresh_until:
                return current.token
            self._session = await self._create_session()
            return self._session.token

    async def _create_session(self) -> _Session:
        consumer, employee = self.credential("consumer_token"), self.credential("employee_token")
        expires = self.today() + dt.timedelta(days=SESSION_DAYS)
        params = {"consumerToken": consumer, "employeeToken": employee, "expirationDate": expires.isoformat()}
        await self._cap.acquire()
        # The spec puts all three in the query string and takes no body and no auth header.
        resp = await send(self._http, "PUT", self.base_url + "/token/session/:create", params=params)
        self._note_rate_limit(resp)
        if resp.status in (401, 403):
            raise AuthenticationFailed(self._advice(describe_error(resp) or f"HTTP {resp.status}"))
        self._raise_for_status(resp, "PUT /token/session/:create")
        token = unwrap(resp, "value", "PUT /token/session/:create").get("token")
        if not isinstance(token, str) or not token:
            raise ProviderRejected(f"PUT /token/session/:create answered without a token: {resp.text()}")
        return _Session(token, expires)

    def _advice(self, detail: str) -> str:
        client = self._spec.client_id
        return (
            f"Tripletex refused the credentials of client {client} ({detail}). Check consumer_token and "
            "employee_token (the employee token may have been deleted or lost its entitlements) and set "
            f"new ones with `cwi connections set {client} tripletex --credential employee_token=…`"
        )


def unwrap(resp: HttpResponse, key: str, what: str) -> Any:
    """``value`` (an object) or ``values`` (a list) of a response envelope."""
    body = resp.json()
    found = body.get(key) if isinstance(body, dict) else None
    expected = list if key == "values" else dict
    if not isinstance(found, expected):
        raise ProviderRejected(f"{what}: expected a {key!r} envelope, got: {resp.text()}")
    return found
