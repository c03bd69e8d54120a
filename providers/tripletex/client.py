"""HTTP and auth for Tripletex: session tokens, Basic auth, rate-limit headers, error bodies."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp

from providers import secrets
from providers.base import ConnectionSpec
from providers.errors import AuthenticationFailed, ProviderRejected
from providers.http import (
    ConnectionThrottle,
    HttpResponse,
    RateHeaders,
    Token,
    TokenCache,
    raise_for_status,
    throttled_send,
)
from providers.listing import Paging
from providers.settings import SettingsReader

SESSION_DAYS = 2
"""Lifetime we ask for; a token is replaced one day before its expirationDate."""
PAGE_SIZE = 1000
RATE_HEADERS = RateHeaders("X-Rate-Limit-Remaining", "X-Rate-Limit-Reset", default_429_wait=5.0)
"""Tripletex may omit X-Rate-Limit-Reset on the 429 itself; then wait 5 s."""


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
        self.settings = SettingsReader.of(spec)
        self._http = http
        self.throttle = ConnectionThrottle.from_settings(self.settings, RATE_HEADERS)
        self._company = spec.settings.get("company_id") or "0"
        self._tokens = TokenCache(self._create_session)

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
        resp = await self._tokens.call(lambda token: self._send(method, path, token, params, json_body))
        if resp.status == 401:
            refused = f"{method} {path} was refused with a fresh session token"
            raise AuthenticationFailed(self._advice(refused))
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
        paging = Paging(f"Tripletex GET {path}")
        while True:
            page_params = {**params, "from": str(start), "count": str(PAGE_SIZE)}
            resp = await self.call("GET", path, params=page_params)
            page = unwrap(resp, "values", f"GET {path}")
            paging.read(v.get("id") for v in page if isinstance(v, dict))
            found.extend(v for v in page if isinstance(v, dict))
            start += len(page)
            if len(page) < PAGE_SIZE:
                return found

    async def _send(
        self, method: str, path: str, token: str, params: Mapping[str, str] | None, json_body: Any
    ) -> HttpResponse:
        basic = base64.b64encode(f"{self._company}:{token}".encode()).decode()
        secrets.learned(basic)
        headers = {"Authorization": f"Basic {basic}", "Accept": "application/json"}
        url = self.base_url + path
        return await throttled_send(
            self.throttle, self._http, method, url, headers=headers, params=params, json_body=json_body
        )

    def _raise_for_status(self, resp: HttpResponse, what: str) -> None:
        raise_for_status(resp, what, describe=lambda r: describe_error(r) or _rate_text(r))

    async def _create_session(self) -> Token:
        consumer = self.settings.credential("consumer_token")
        employee = self.settings.credential("employee_token")
        expires = self.today() + dt.timedelta(days=SESSION_DAYS)
        params = {"consumerToken": consumer, "employeeToken": employee, "expirationDate": expires.isoformat()}
        # The spec puts all three in the query string and takes no body and no auth header.
        url = self.base_url + "/token/session/:create"
        resp = await throttled_send(self.throttle, self._http, "PUT", url, params=params)
        if resp.status in (401, 403):
            raise AuthenticationFailed(self._advice(describe_error(resp) or f"HTTP {resp.status}"))
        self._raise_for_status(resp, "PUT /token/session/:create")
        token = unwrap(resp, "value", "PUT /token/session/:create").get("token")
        if not isinstance(token, str) or not token:
            raise ProviderRejected(f"PUT /token/session/:create answered without a token: {resp.text()}")
        fresh_until = expires - dt.timedelta(days=1)
        return Token(token, lambda: self.today() < fresh_until)

    def _advice(self, detail: str) -> str:
        client = self._spec.client_id
        return (
            f"Tripletex refused the credentials of client {client} ({detail}). Check consumer_token and "
            "employee_token (the employee token may have been deleted or lost its entitlements) and set "
            f"new ones with `{self.settings.credential_command('employee_token')}`"
        )


def _rate_text(resp: HttpResponse) -> str | None:
    return "rate limit exceeded" if resp.status == 429 else None


def unwrap(resp: HttpResponse, key: str, what: str) -> Any:
    """``value`` (an object) or ``values`` (a list) of a response envelope."""
    body = resp.json()
    found = body.get(key) if isinstance(body, dict) else None
    expected = list if key == "values" else dict
    if not isinstance(found, expected):
        raise ProviderRejected(f"{what}: expected a {key!r} envelope, got: {resp.text()}")
    return found
