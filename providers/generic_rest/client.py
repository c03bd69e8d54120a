"""HTTP for the generic REST interface: bearer auth, Idempotency-Key, ``{"error": …}`` bodies."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import aiohttp

from contracts import Entity
from providers.base import PreparedRequest
from providers.errors import TransientError
from providers.http import (
    ConnectionThrottle,
    HttpResponse,
    raise_for_status,
    redact_headers,
    retry_after_seconds,
    throttled_send,
)

#: 422 rules after which the same request may succeed later (the interface's *Records and rules*).
RETRYABLE_RULES = frozenset({"reference"})


def describe_error(resp: HttpResponse) -> str | None:
    """The interface's own error text, from ``{"error": "…"}``."""
    body = resp.json()
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, str) else None


def error_rule(resp: HttpResponse) -> str | None:
    """The ``rule`` of a 409/422 answer (``{"error": …, "rule": …}``)."""
    body = resp.json()
    rule = body.get("rule") if isinstance(body, dict) else None
    return rule if isinstance(rule, str) else None


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

    @property
    def ping_url(self) -> str:
        return f"{self.base_url}/v1/_ping"

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
        what = f"generic_rest {method} {entity.value}/{cw_id}"
        if resp.status == 409 or (resp.status == 422 and error_rule(resp) in RETRYABLE_RULES):
            # In flight under the same key, or a parent not there yet: the same request later.
            detail = describe_error(resp) or resp.text()
            raise TransientError(
                f"{what}: HTTP {resp.status}: {detail}", retry_after=retry_after_seconds(resp.headers)
            )
        if resp.status != 404:
            raise_for_status(resp, what, describe=describe_error)
        return resp

    async def list_page(self, entity: Entity, params: dict[str, str]) -> HttpResponse:
        """``GET {base}/v1/{entity}?changed_since=&cursor=&limit=``; error statuses become typed errors."""
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        url = f"{self.base_url}/v1/{entity.value}"
        resp = await throttled_send(
            self._rate_cap,
            self._session,
            "GET",
            url,
            headers=headers,
            params=params,
            timeout_s=self._timeout_s,
        )
        raise_for_status(resp, f"generic_rest GET {url}", describe=describe_error)
        return resp

    async def ping(self) -> HttpResponse:
        """``GET {base}/v1/_ping``; error statuses other than 404 become typed errors."""
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        resp = await throttled_send(
            self._rate_cap, self._session, "GET", self.ping_url, headers=headers, timeout_s=self._timeout_s
        )
        if resp.status != 404:
            raise_for_status(resp, f"generic_rest GET {self.ping_url}", describe=describe_error)
        return resp
