"""The sandbox ERP's HTTP application: the interface of contracts/generic_rest.openapi.json (v1) and a
tiny control API under ``/_sandbox`` (no auth; control.py) that tests and the demo use to inject
failures and read what happened.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import json
import math
import random
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from aiohttp import web

from contracts.interface import ENTITIES, VERSION
from providers.generic_rest.sandbox.firing import WebhookSender
from providers.generic_rest.sandbox.rules import Problem, RequestRules, load_document
from providers.generic_rest.sandbox.store import Remembered, Reply, Store, StoredRecord
from providers.generic_rest.sandbox.wire import (
    ERP_CREATED,
    NOT_JSON,
    RateLimit,
    change_item,
    cursor,
    fingerprint,
    position,
)


@dataclass(slots=True)
class Stats:
    requests: int = 0
    listings: int = 0  # listing requests (the reconciliation tests count them; not in as_json)
    writes: Counter[str] = field(default_factory=Counter)
    creates: int = 0
    updates: int = 0
    deletes: int = 0
    user_changes: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "writes": dict(self.writes),
            "creates": self.creates,
            "updates": self.updates,
            "deletes": self.deletes,
        }


@dataclass(slots=True)
class InjectedFailure:
    status: int
    remaining: int
    retry_after: float | None = None
    error: str | None = None


def error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def _reply(reply: Reply) -> web.Response:
    if reply.body is None:
        return web.Response(status=reply.status)
    return web.json_response(reply.body, status=reply.status)


def now_utc() -> str:
    """A UTC timestamp whose text order is its time order (the store compares them as text)."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_ACTIONS = {"creates": "created", "updates": "updated", "deletes": "deleted"}


class Sandbox:
    """The state behind one sandbox app: records, answers per Idempotency-Key, counters, failures.

    ``api_user`` is the subject of the one token the sandbox accepts: what ``GET /v1/_ping``
    answers, and the ``author`` of the webhooks of changes made through the interface. A user's
    change (``/_sandbox/user-change``) has its own author. Every change fires a signed webhook
    once a subscription is set.
    """

    def __init__(
        self,
        *,
        token: str,
        latency_ms: float,
        fail_rate: float,
        seed: int | None,
        store: Store,
        api_user: str = "cwi",
        rate_limit: float | None = None,
    ) -> None:
        if not 0 <= fail_rate <= 1:
            raise ValueError(f"fail_rate must be between 0 and 1, not {fail_rate}")
        self._authorization = f"Bearer {token}".encode()
        self._latency_s = latency_ms / 1000
        self._fail_rate = fail_rate
        self._random = random.Random(seed)
        self._rate_limit = None if rate_limit is None else RateLimit(rate_limit)
        self._in_flight: set[str] = set()
        self.store = store
        self.rules = RequestRules(load_document())
        self.stats = Stats()
        self.failures: deque[InjectedFailure] = deque()
        self.api_user = api_user
        self.webhooks = WebhookSender()

    # The interface.

    async def ping(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/_ping``: who the token belongs to."""
        refused = await self._admit(request)
        if refused is not None:
            return refused
        return web.json_response({"subject": self.api_user, "interface": VERSION})

    async def listing(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/{entity}?changed_since=&cursor=&limit=``: records in change order, a page."""
        entity = request.match_info["entity"]
        refused = await self._admit(request, entity)
        if refused is not None:
            return refused
        self.stats.listings += 1
        query = self.rules.list_query(request.query)
        if isinstance(query, str):
            return error(400, query)
        start = position(query)
        if start is None:
            return web.json_response(
                {"error": "cursor: not a cursor this ERP issued", "rule": "cursor"}, status=422
            )
        after, since = start
        page = self.store.changes(entity, after, since, query.limit + 1)
        has_more = len(page) > query.limit
        page = page[: query.limit]
        # At the end, the cursor jumps to the latest change: later ones all come after it.
        last = page[-1].seq if has_more else max([after, self.store.last_seq()])
        # Past the end, every later change is newer than ``since``: the cursor no longer needs it.
        return web.json_response(
            {
                "items": [change_item(record) for record in page],
                "next_cursor": cursor(last, since if has_more else None),
                "has_more": has_more,
            }
        )

    async def record(self, request: web.Request) -> web.StreamResponse:
        """``PUT|GET|DELETE /v1/{entity}/{cw_id}``."""
        entity, cw_id = request.match_info["entity"], request.match_info["cw_id"]
        refused = await self._admit(request, entity)
        if refused is not None:
            return refused
        problem = self.rules.request_problem(request.method, entity, cw_id, request.headers)
        if problem is not None:
            return error(400, problem)
        if request.method == "GET":
            return self._get(entity, cw_id)
        body: Any = None
        if request.method == "PUT":
            if request.content_type != "application/json":
                return error(415, f"Content-Type: must be application/json, not {request.content_type!r}")
            raw = await request.read()
            try:
                body = json.loads(raw)
            except ValueError:
                body = NOT_JSON
        key = request.headers["Idempotency-Key"]
        request_print = fingerprint(request.method, entity, cw_id, body)
        if key in self._in_flight:
            return web.json_response(
                {
                    "error": "Idempotency-Key: the first request with this key is still in flight",
                    "rule": "idempotency_key_in_flight",
                },
                status=409,
            )
        self._in_flight.add(key)
        try:
            if self._latency_s:
                await asyncio.sleep(self._latency_s)
            # From here to the end no await: the replay check and the write cannot interleave.
            remembered = self.store.recall(key)
            if remembered is not None:
                if remembered.fingerprint == request_print:
                    return _reply(remembered.reply)
                return web.json_response(
                    {
                        "error": "Idempotency-Key: already used for another request",
                        "rule": "idempotency_key_reused",
                    },
                    status=422,
                )
            reply = self._put(entity, cw_id, body) if request.method == "PUT" else self._delete(entity, cw_id)
            if 200 <= reply.status < 300:
                self.store.remember(key, Remembered(request_print, reply))
            return _reply(reply)
        finally:
            self._in_flight.discard(key)

    async def _admit(self, request: web.Request, entity: str | None = None) -> web.Response | None:
        """Count the request, then: rate limit, injected failure, token, path; None to go on."""
        self.stats.requests += 1
        if self._rate_limit is not None and (wait := self._rate_limit.wait_s()):
            seconds = max(1, math.ceil(wait))
            return error(429, f"rate limited: retry in {seconds} s", {"Retry-After": str(seconds)})
        injected = self._injected_failure()
        if injected is not None:
            return injected
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, self._authorization):
            return error(
                401, "Authorization: bearer token missing or not accepted", {"WWW-Authenticate": "Bearer"}
            )
        if entity is not None and entity not in ENTITIES:
            return error(404, f"no such path: {request.path} (interface {VERSION}: {', '.join(ENTITIES)})")
        if request.method == "GET" and self._latency_s:
            await asyncio.sleep(self._latency_s)
        return None

    def _injected_failure(self) -> web.Response | None:
        if self.failures:
            failure = self.failures[0]
            failure.remaining -= 1
            if failure.remaining <= 0:
                self.failures.popleft()
            headers = {} if failure.retry_after is None else {"Retry-After": f"{failure.retry_after:g}"}
            message = failure.error or f"sandbox: injected HTTP {failure.status}"
            return error(failure.status, message, headers)
        if self._fail_rate and self._random.random() < self._fail_rate:
            return error(503, f"sandbox: simulated outage (fail_rate {self._fail_rate:g})")
        return None

    def _get(self, entity: str, cw_id: str) -> web.Response:
        record = self.store.get(entity, cw_id)
        if record is None or record.deleted:
            return error(404, f"{entity} {cw_id!r} does not exist")
        return web.json_response(
            {"external_id": record.external_id, "version": record.version, "data": record.data}
        )

    def _put(self, entity: str, cw_id: str, body: Any) -> Reply:
        if body is NOT_JSON:
            return Reply(400, {"error": "body: not valid JSON"})
        problem: Problem | None = self.rules.body_problem(entity, cw_id, body)
        if problem is not None:
            return Reply(422, problem.as_json())
        existing = self.store.get(entity, cw_id)
        if existing is None:
            record = StoredRecord(entity, cw_id, self.store.next_external_id(entity), 1, body)
        else:
            record = replace(existing, version=existing.version + 1, data=body, deleted=False)
        created = existing is None or existing.deleted
        record = self._write(record, "creates" if created else "updates")
        return Reply(201 if created else 200, {"external_id": record.external_id, "version": record.version})

    def _delete(self, entity: str, cw_id: str) -> Reply:
        existing = self.store.get(entity, cw_id)
        if existing is None or existing.deleted:
            return Reply(404, {"error": f"{entity} {cw_id!r} does not exist"})
        self._write(replace(existing, version=existing.version + 1, deleted=True), "deletes")
        return Reply(204, None)

    def _write(self, record: StoredRecord, kind: str) -> StoredRecord:
        # Every state change made through the interface passes here: announce it as the token's.
        stored = self.save(record)
        self.stats.writes[f"{record.entity}/{record.cw_id}"] += 1
        setattr(self.stats, kind, getattr(self.stats, kind) + 1)
        self.announce(stored, _ACTIONS[kind], self.api_user)
        return stored

    def save(self, record: StoredRecord) -> StoredRecord:
        return self.store.save(replace(record, changed_at=now_utc()))

    def announce(self, record: StoredRecord, action: str, author: str) -> None:
        change: dict[str, Any] = {
            "entity": record.entity,
            "external_id": record.external_id,
            "version": record.version,
            "author": author,
        }
        if not record.cw_id.startswith(ERP_CREATED):
            change["cw_id"] = record.cw_id
        if not record.deleted:
            change["record"] = record.data
        self.webhooks.fire(
            {
                "type": f"{record.entity}.{action}",
                "timestamp": dt.datetime.now(dt.UTC).isoformat(),
                "data": change,
            }
        )

    def user_change(self, spec: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """A change made by a user in the ERP: ``{"entity", "cw_id"?, "data"?, "delete"?, "author"?}``.

        With ``cw_id`` it updates (or, with ``delete``, deletes) that record; without, it creates a
        record in the ERP that CW does not know yet.
        """
        entity, cw_id, data = spec.get("entity"), spec.get("cw_id"), spec.get("data")
        author = str(spec.get("author") or "erp-user")
        if entity not in ENTITIES:
            return 400, {"error": f"entity must be one of {', '.join(ENTITIES)}"}
        if not spec.get("delete") and not isinstance(data, dict):
            return 400, {"error": "data (the record, in CW's shape) is required unless delete is true"}
        store = self.store
        if cw_id is None:
            if spec.get("delete"):
                return 400, {"error": "delete needs the cw_id of the record"}
            assert isinstance(data, dict)
            external_id = store.next_external_id(entity)
            fields = {k: v for k, v in data.items() if k != "id"}
            record = StoredRecord(entity, f"{ERP_CREATED}{external_id}", external_id, 1, fields)
            action = "created"
        else:
            existing = store.get(entity, str(cw_id))
            if existing is None or existing.deleted:
                return 404, {"error": f"{entity} {cw_id!r} does not exist"}
            if spec.get("delete"):
                record, action = replace(existing, version=existing.version + 1, deleted=True), "deleted"
            else:
                assert isinstance(data, dict)
                body = {**data, "id": existing.cw_id}
                problem = self.rules.body_problem(entity, existing.cw_id, body)
                if problem is not None:
                    return 422, problem.as_json()
                record, action = replace(existing, version=existing.version + 1, data=body), "updated"
        stored = self.save(record)
        self.stats.user_changes += 1
        self.announce(stored, action, author)
        return 200, {"external_id": stored.external_id, "version": stored.version}


@web.middleware
async def json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """aiohttp's own 404/405/413 answers as the interface's ``{"error": …}`` bodies."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        reason = {404: f"no such path: {request.path}", 405: f"method {request.method} not allowed here"}
        return error(exc.status, reason.get(exc.status, exc.reason), headers)
