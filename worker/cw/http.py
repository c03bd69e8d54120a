"""The CW port over HTTP: the GraphQL Query API and the Write API (contracts/cw_*).

Requests are exactly those documented in contracts/cw_query.graphql and
contracts/cw_write.openapi.json; the tests validate them against those documents.
"""

from __future__ import annotations

import datetime as dt
from importlib.resources import files
from typing import Any
from urllib.parse import quote

import aiohttp

from contracts import Entity
from providers.errors import PermanentError, ProviderRejected
from providers.http import HttpResponse, raise_for_status, send
from worker.cw.port import CWChange, CWPage, Written
from worker.logging import redactor

CLIENT_HEADER = "X-CW-Client-Id"
QUERY_DOCUMENT = files("contracts").joinpath("cw_query.graphql").read_text()
#: the operation of contracts/cw_query.graphql that reads each entity.
OPERATIONS = {entity: entity.value.capitalize() for entity in Entity}
#: … and the one that lists each entity's changes (its field is ``<entity>Changes``).
LIST_OPERATIONS = {entity: f"{entity.value.capitalize()}Changes" for entity in Entity}


class CWConfigError(ValueError):
    """CWI_CW_* settings missing or unusable; the message names the variable."""


def _describe(resp: HttpResponse) -> str | None:
    body = resp.json()
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, str):
            return error
        errors = body.get("errors")
        if isinstance(errors, list):
            return "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors)
    return None


class HttpCW:
    """``CWApi`` over aiohttp: one shared session, bearer API key, per-call client id and key."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        graphql_url: str,
        write_url: str,
        api_key: str,
        timeout_s: float = 30.0,
    ) -> None:
        if not graphql_url or not write_url or not api_key:
            raise CWConfigError("CWI_CW_GRAPHQL_URL, CWI_CW_WRITE_URL and CWI_CW_API_KEY must all be set")
        self._session = session
        self.graphql_url = graphql_url
        self.write_url = write_url.rstrip("/")
        self._api_key = api_key
        self._timeout_s = timeout_s
        redactor.register(api_key)

    def headers(self, client_id: str, key: str) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self._api_key}",
            CLIENT_HEADER: client_id,
            "Idempotency-Key": key,
            "Accept": "application/json",
        }

    async def _send(self, method: str, url: str, client_id: str, key: str, body: Any = None) -> HttpResponse:
        headers = self.headers(client_id, key)
        return await send(
            self._session, method, url, headers=headers, json_body=body, timeout_s=self._timeout_s
        )

    def graphql_body(self, entity: Entity, cw_id: str) -> dict[str, Any]:
        return {"query": QUERY_DOCUMENT, "operationName": OPERATIONS[entity], "variables": {"id": cw_id}}

    async def fetch(self, client_id: str, entity: Entity, cw_id: str, *, key: str) -> dict[str, Any] | None:
        resp = await self._send("POST", self.graphql_url, client_id, key, self.graphql_body(entity, cw_id))
        what = f"CW query {entity.value} {cw_id!r}"
        _raise(resp, what)
        body = resp.json()
        if not isinstance(body, dict):
            raise ProviderRejected(f"{what}: the answer is not a GraphQL response: {resp.text(200)}")
        if body.get("errors"):
            raise ProviderRejected(f"{what}: {_describe(resp)}")
        data = body.get("data")
        record = data.get(entity.value) if isinstance(data, dict) else None
        if record is not None and not isinstance(record, dict):
            raise ProviderRejected(f"{what}: data.{entity.value} is not an object")
        return record

    async def list_changes(
        self,
        client_id: str,
        entity: Entity,
        *,
        changed_since: dt.datetime | None,
        cursor: str | None,
        first: int,
        key: str,
    ) -> CWPage:
        variables = {
            "changedSince": None if changed_since is None else changed_since.isoformat(),
            "cursor": cursor,
            "first": first,
        }
        body = {"query": QUERY_DOCUMENT, "operationName": LIST_OPERATIONS[entity], "variables": variables}
        resp = await self._send("POST", self.graphql_url, client_id, key, body)
        what = f"CW listing of {entity.value} records"
        _raise(resp, what)
        answer = resp.json()
        if isinstance(answer, dict) and answer.get("errors"):
            raise ProviderRejected(f"{what}: {_describe(resp)}")
        data = answer.get("data") if isinstance(answer, dict) else None
        page = data.get(f"{entity.value}Changes") if isinstance(data, dict) else None
        if not isinstance(page, dict) or not isinstance(page.get("items"), list):
            raise ProviderRejected(f"{what}: the answer is not a page: {resp.text(200)}")
        items = tuple(_change(item) for item in page["items"] if isinstance(item, dict))
        return CWPage(items, str(page.get("next_cursor") or cursor or ""), page.get("has_more") is True)

    def record_url(self, entity: Entity, cw_id: str | None = None) -> str:
        base = f"{self.write_url}/v1/{entity.value}"
        return base if cw_id is None else f"{base}/{quote(cw_id, safe='')}"

    async def create(self, client_id: str, entity: Entity, fields: dict[str, Any], *, key: str) -> Written:
        resp = await self._send("POST", self.record_url(entity), client_id, key, fields)
        what = f"CW create {entity.value}"
        _raise(resp, what)
        body = resp.json()
        cw_id = body.get("id") if isinstance(body, dict) else None
        if not isinstance(cw_id, str) or not cw_id:
            raise ProviderRejected(f"{what}: HTTP {resp.status} answer names no id: {resp.text(200)}")
        return Written(cw_id, _version(body))

    async def update(
        self, client_id: str, entity: Entity, cw_id: str, fields: dict[str, Any], *, key: str
    ) -> Written | None:
        resp = await self._send("PUT", self.record_url(entity, cw_id), client_id, key, fields)
        if resp.status == 404:
            return None
        _raise(resp, f"CW update {entity.value} {cw_id!r}")
        return Written(cw_id, _version(resp.json()))

    async def delete(self, client_id: str, entity: Entity, cw_id: str, *, key: str) -> bool:
        resp = await self._send("DELETE", self.record_url(entity, cw_id), client_id, key)
        if resp.status == 404:
            return False
        _raise(resp, f"CW delete {entity.value} {cw_id!r}")
        return True


def _change(item: dict[str, Any]) -> CWChange:
    record = item.get("record")
    stamp = item.get("updated_at")
    sequence = item.get("sequence")
    return CWChange(
        cw_id=str(item["id"]),
        sequence=sequence if isinstance(sequence, int) and not isinstance(sequence, bool) else None,
        updated_at=dt.datetime.fromisoformat(stamp) if isinstance(stamp, str) and stamp else None,
        record=record if isinstance(record, dict) and not item.get("deleted") else None,
    )


def _version(body: Any) -> int | None:
    version = body.get("version") if isinstance(body, dict) else None
    return version if isinstance(version, int) and not isinstance(version, bool) else None


def _raise(resp: HttpResponse, what: str) -> None:
    """5xx/408/429 and network failures are transient; any other 4xx is permanent, with CW's text.

    A 401/403 from CW is our API key, not the ERP's credentials: it dead-letters as a rejection.
    """
    if resp.status in (401, 403):
        detail = _describe(resp) or resp.text()
        raise PermanentError(f"{what}: HTTP {resp.status}: {detail} (check CWI_CW_API_KEY)")
    raise_for_status(resp, what, describe=_describe)
