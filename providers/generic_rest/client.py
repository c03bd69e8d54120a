"""HTTP for the generic REST interface: bearer auth, Idempotency-Key, ``{"error": …}`` bodies."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import aiohttp

from contracts import Entity
from providers.base import PreparedRequest
from providers.http import ConnectionThrottle, HttpResponse, raise_for_status, redact_headers, throttled_send


def describe_error(resp: HttpResponse) -> str | None:
    """The interface's own error text, from ``{"error": "…"}``."""
    body = resp.json()
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, str) else None


class GenericRestClient:
    """One connection's requests; every one waits for the connection's rate cap first."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        *,
        token: str,
        timeout_s: float,
        rate_cap: ConnectionThrottle,
    ) -> None:
        self._session = session
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._timeout_s = timeout_s
        self._rate_cap = rate_cap

    def url(self, entity: Entity, cw_id: str) -> str:
        return f"{self.base_url}/v1/{entity.value}/{quote(cw_id, safe='')}"

    def headers(self, idempotency_key: str) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self._token}",
            "Idempotency-Key": idempotency_key,
            "Accept": "application/json",
        }

    def prepare(self, method: str, entity: Entity, cw_id: str, key: str, body: Any = None) -> PreparedRequest:
        """The request as it would go out, for display: the token redacted."""
        headers = self.headers(key)
        if body is not None:
            headers["Content-Type"] = "application/json"
        return PreparedRequest(method, self.url(entity, cw_id), redact_headers(headers), body)

    async def request(
        self, method: str, entity: Entity, cw_id: str, key: str, body: Any = None
    ) -> HttpResponse:
        """Send one request; error statuses other than 404 become typed errors."""
        resp = await throttled_send(
            self._rate_cap,
            self._session,
            method,
            self.url(entity, cw_id),
            headers=self.headers(key),
            json_body=body,
            timeout_s=self._timeout_s,
        )
        if resp.status != 404:
            raise_for_status(resp, f"generic_rest {method} {entity.value}/{cw_id}", describe=describe_error)
        return resp
