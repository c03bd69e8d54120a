"""HTTP and auth for Visma.net ERP: client-credentials token cache, one refresh on 401, Visma error bodies.

Tokens come from Visma Connect (``token_url``) with ``grant_type=client_credentials``, the client's
``tenant_id`` and ``scope``; the tenant is inside the token, so API calls carry only ``Authorization``.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import aiohttp

from contracts import jsontext
from providers.base import ConnectionSpec, PreparedRequest
from providers.errors import AuthenticationFailed, TransientError
from providers.http import (
    ConnectionThrottle,
    HttpResponse,
    Token,
    TokenCache,
    fresh_until,
    raise_for_status,
    redact_headers,
    send,
    throttled_send,
    token_lifetime,
)
from providers.plan import is_placeholder
from providers.settings import SettingsReader

DEFAULT_TOKEN_URL = "https://connect.visma.com/connect/token"  # noqa: S105 - a URL, not a secret
DEFAULT_SCOPES = " ".join(
    f"vismanet_erp_service_api:{verb}" for verb in ("create", "read", "update", "delete")
)
REFRESH_MARGIN_S = 60.0
TIMEOUT_S = 30.0


def describe_error(resp: HttpResponse) -> str | None:
    """Visma's own text: ``ExceptionMessage`` (+ ``ExceptionDetails``, + ``ExceptionMessageID``)."""
    body = resp.json()
    if not isinstance(body, dict):
        return None
    message = body.get("ExceptionMessage") or body.get("message") or body.get("Message")
    if not message:
        return None
    text = str(message)
    details = body.get("ExceptionDetails")
    if details and str(details) != text:
        text += f" — {str(details)[:500]}"
    if body.get("ExceptionMessageID"):
        text += f" (message id {body['ExceptionMessageID']})"
    return text


def location_id(resp: HttpResponse) -> str | None:
    """The key at the end of a 201's ``Location`` (``…/v1/customer/10001`` → ``10001``)."""
    location = resp.headers.get("Location")
    if not location:
        return None
    last = urlsplit(location).path.rstrip("/").rpartition("/")[2]
    return unquote(last) or None


def item_path(collection: str, key: str) -> str:
    """``collection/key``, the key quoted; a preview's placeholder (``<…>``) is shown as it is."""
    return f"{collection}/{key if is_placeholder(key) else quote(key, safe='')}"


def token_subject(token: str) -> str | None:
    """The ``sub`` claim of a JWT access token (read, not verified: it is our own token, and Visma
    checks it); None when the token is not a JWT or has no subject."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = jsontext.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:  # not base64 JSON, or nested deeper than claims are (jsontext.BadText)
        return None
    subject = claims.get("sub") if isinstance(claims, dict) else None
    return str(subject) if subject else None


class VismaNetClient:
    """One connection's requests: rate cap, bearer token (cached per instance), typed errors."""

    def __init__(self, spec: ConnectionSpec, http: aiohttp.ClientSession) -> None:
        self._spec = spec
        self.settings = SettingsReader.of(spec)
        self._http = http
        self.base_url = spec.base_url.rstrip("/")
        self.token_url = spec.setting("token_url") or DEFAULT_TOKEN_URL
        self.scopes = spec.setting("scopes") or DEFAULT_SCOPES
        self.throttle = ConnectionThrottle.from_settings(self.settings)
        self.tokens = TokenCache(self._fetch_token)

    @property
    def tenant_id(self) -> str | None:
        return self._spec.setting("tenant_id") or None

    def _refused(self, what: str) -> AuthenticationFailed:
        return AuthenticationFailed(
            f"Visma.net refused the connection of {self._spec.client_id} ({what}). Check credentials "
            f"client_id and client_secret and setting tenant_id, e.g. "
            f"`{self.settings.credential_command('client_secret')}`"
        )

    def _token_form(self) -> dict[str, str]:
        client_id = self.settings.credential("client_id")
        client_secret = self.settings.credential("client_secret")
        if not self.tenant_id:
            raise AuthenticationFailed(str(self.settings.missing("tenant_id", "the Visma.net company")))
        return {
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": client_secret,
            "tenant_id": self.tenant_id,
            "scope": self.scopes,
        }

    async def _fetch_token(self) -> Token:
        form = self._token_form()
        resp = await send(
            self._http, "POST", self.token_url, data=form, headers={"Accept": "application/json"}
        )
        if resp.status in (400, 401, 403):
            raise self._refused(f"token request: HTTP {resp.status}: {_oauth_error(resp)}")
        raise_for_status(resp, f"{self._spec.kind} token request")
        body = resp.json()
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise TransientError(f"{self._spec.kind} token response without access_token: {resp.text(200)}")
        lifetime = token_lifetime(body.get("expires_in"), 3600.0)  # Connect's documented default: an hour
        return Token(token, fresh_until(lifetime, min(REFRESH_MARGIN_S, lifetime / 2)))

    def headers(self, token: str, *, with_body: bool) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        if with_body:
            headers["Content-Type"] = "application/json"
        return headers

    def prepare(self, method: str, path: str, body: Any = None) -> PreparedRequest:
        """The request as it would go out, for display: the token redacted."""
        headers = redact_headers(self.headers("…", with_body=body is not None))
        return PreparedRequest(method, self.base_url + path, headers, body)

    async def _send(
        self, method: str, path: str, token: str, body: Any, params: Mapping[str, str] | None
    ) -> HttpResponse:
        return await throttled_send(
            self.throttle,
            self._http,
            method,
            self.base_url + path,
            headers=self.headers(token, with_body=body is not None),
            json_body=body,
            params=params,
            timeout_s=TIMEOUT_S,
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        allow_404: bool = False,
    ) -> HttpResponse:
        """Send one API request; a 401 refreshes the token once. Error statuses become typed errors."""
        resp = await self.tokens.call(lambda token: self._send(method, path, token, body, params))
        if resp.status == 401:
            raise self._refused(f"{method} {path}: HTTP 401 even with a new token")
        if resp.status == 404 and allow_404:
            return resp
        self._raise_for_status(resp, f"{self._spec.kind} {method} {path}")
        return resp

    def _raise_for_status(self, resp: HttpResponse, what: str) -> None:
        if resp.status == 403:
            raise AuthenticationFailed(
                f"{what}: HTTP 403: {describe_error(resp) or resp.text()}. The API client lacks a scope, or "
                f"tenant {self.tenant_id} has not approved it: check setting scopes "
                f"(`{self.settings.command('scopes')}`) and the client's access in Visma.net"
            )
        raise_for_status(resp, what, describe=describe_error)

    async def get_json(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        """The decoded body of a GET, or None when Visma answers 404."""
        resp = await self.request("GET", path, params=params, allow_404=True)
        return None if resp.status == 404 else resp.json()


def _oauth_error(resp: HttpResponse) -> str:
    body = resp.json()
    if isinstance(body, dict) and body.get("error"):
        described = body.get("error_description")
        return f"{body['error']}: {described}" if described else str(body["error"])
    return resp.text(200) or "no detail"
