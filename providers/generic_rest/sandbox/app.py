"""The sandbox ERP's HTTP application: the interface of contracts/generic_rest.openapi.json and a
tiny control API under ``/_sandbox`` (no auth) that tests and the demo use to inject failures
and read what happened.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import random
from collections import Counter, deque
from dataclasses import dataclass, field, replace
from typing import Any

from aiohttp import web

from providers.generic_rest.sandbox.rules import RequestRules, load_document
from providers.generic_rest.sandbox.store import Reply, Store, StoredRecord, open_store


@dataclass(slots=True)
class Stats:
    requests: int = 0
    writes: Counter[str] = field(default_factory=Counter)
    creates: int = 0
    updates: int = 0
    deletes: int = 0

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


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def _reply(reply: Reply) -> web.Response:
    if reply.body is None:
        return web.Response(status=reply.status)
    return web.json_response(reply.body, status=reply.status)


class Sandbox:
    """The state behind one sandbox app: records, answers per Idempotency-Key, counters, failures."""

    def __init__(
        self, *, token: str, latency_ms: float, fail_rate: float, seed: int | None, store: Store
    ) -> None:
        if not 0 <= fail_rate <= 1:
            raise ValueError(f"fail_rate must be between 0 and 1, not {fail_rate}")
        self._authorization = f"Bearer {token}".encode()
        self._latency_s = latency_ms / 1000
        self._fail_rate = fail_rate
        self._random = random.Random(seed)
        self.store = store
        self.rules = RequestRules(load_document())
        self.stats = Stats()
        self.failures: deque[InjectedFailure] = deque()

    async def interface(self, request: web.Request) -> web.StreamResponse:
        """``PUT|GET|DELETE /v1/{entity}/{cw_id}``."""
        self.stats.requests += 1
        if self._latency_s:
            await asyncio.sleep(self._latency_s)
        injected = self._injected_failure()
        if injected is not None:
            return injected
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, self._authorization):
            return _error(
                401, "Authorization: bearer token missing or not accepted", {"WWW-Authenticate": "Bearer"}
            )
        entity, cw_id = request.match_info["entity"], request.match_info["cw_id"]
        problem = self.rules.request_problem(entity, cw_id, request.headers)
        if problem is not None:
            return _error(400, problem)
        if request.method == "GET":
            return self._get(entity, cw_id)
        raw = await request.read() if request.method == "PUT" else b""
        # From here to the end no await: the replay check and the write cannot interleave.
        key = (request.headers["Idempotency-Key"], request.method, f"{entity}/{cw_id}")
        remembered = self.store.recall(key)
        if remembered is not None:
            return _reply(remembered)
        reply = self._put(entity, cw_id, raw) if request.method == "PUT" else self._delete(entity, cw_id)
        if 200 <= reply.status < 300:
            self.store.remember(key, reply)
        return _reply(reply)

    def _injected_failure(self) -> web.Response | None:
        if self.failures:
            failure = self.failures[0]
            failure.remaining -= 1
            if failure.remaining <= 0:
                self.failures.popleft()
            headers = {} if failure.retry_after is None else {"Retry-After": f"{failure.retry_after:g}"}
            message = failure.error or f"sandbox: injected HTTP {failure.status}"
            return _error(failure.status, message, headers)
        if self._fail_rate and self._random.random() < self._fail_rate:
            return _error(503, f"sandbox: simulated outage (fail_rate {self._fail_rate:g})")
        return None

    def _get(self, entity: str, cw_id: str) -> web.Response:
        record = self.store.get(entity, cw_id)
        if record is None or record.deleted:
            return _error(404, f"{entity} {cw_id!r} does not exist")
        return web.json_response(
            {"external_id": record.external_id, "version": record.version, "data": record.data}
        )

    def _put(self, entity: str, cw_id: str, raw: bytes) -> Reply:
        try:
            body = json.loads(raw)
        except ValueError:
            return Reply(400, {"error": "body: not valid JSON"})
        problem = self.rules.body_problem(entity, cw_id, body)
        if problem is not None:
            return Reply(422, {"error": problem})
        existing = self.store.get(entity, cw_id)
        if existing is None:
            record = StoredRecord(entity, cw_id, self.store.next_external_id(entity), 1, body)
        else:
            record = replace(existing, version=existing.version + 1, data=body, deleted=False)
        self.store.save(record)
        created = existing is None or existing.deleted
        self._count_write(record, "creates" if created else "updates")
        return Reply(201 if created else 200, {"external_id": record.external_id, "version": record.version})

    def _delete(self, entity: str, cw_id: str) -> Reply:
        existing = self.store.get(entity, cw_id)
        if existing is None or existing.deleted:
            return Reply(404, {"error": f"{entity} {cw_id!r} does not exist"})
        record = replace(existing, version=existing.version + 1, deleted=True)
        self.store.save(record)
        self._count_write(record, "deletes")
        return Reply(204, None)

    def _count_write(self, record: StoredRecord, kind: str) -> None:
        # Outbound webhooks (ERP → CW) will hang off this point: every state change passes here.
        self.stats.writes[f"{record.entity}/{record.cw_id}"] += 1
        setattr(self.stats, kind, getattr(self.stats, kind) + 1)

    # The control API.

    async def fail_next(self, request: web.Request) -> web.Response:
        """``{"status": 429|503|…, "count": n, "retry_after": s?, "error": "…"?}``."""
        try:
            spec = await request.json()
            failure = InjectedFailure(
                status=int(spec["status"]),
                remaining=int(spec.get("count", 1)),
                retry_after=None if spec.get("retry_after") is None else float(spec["retry_after"]),
                error=None if spec.get("error") is None else str(spec["error"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            return _error(400, f"fail-next needs {{'status': int, 'count'?: int, …}}: {exc}")
        if not 400 <= failure.status <= 599 or failure.remaining < 1:
            return _error(400, "status must be 400-599 and count at least 1")
        self.failures.append(failure)
        return web.json_response({"queued": failure.remaining})

    async def stats_view(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats.as_json())

    async def records_view(self, request: web.Request) -> web.Response:
        return web.json_response([record.as_json() for record in self.store.records()])

    async def reset(self, request: web.Request) -> web.Response:
        self.store.reset()
        self.stats = Stats()
        self.failures.clear()
        return web.Response(status=204)


SANDBOX = web.AppKey("sandbox", Sandbox)


def create_app(
    *,
    token: str,
    latency_ms: float = 0,
    fail_rate: float = 0,
    seed: int | None = None,
    db_path: str | None = None,
) -> web.Application:
    """The sandbox ERP as an aiohttp application; ``app[SANDBOX]`` is its state."""
    sandbox = Sandbox(
        token=token, latency_ms=latency_ms, fail_rate=fail_rate, seed=seed, store=open_store(db_path)
    )
    app = web.Application()
    app[SANDBOX] = sandbox
    for method in ("PUT", "GET", "DELETE"):
        app.router.add_route(method, "/v1/{entity}/{cw_id}", sandbox.interface)
    app.router.add_post("/_sandbox/fail-next", sandbox.fail_next)
    app.router.add_get("/_sandbox/stats", sandbox.stats_view)
    app.router.add_get("/_sandbox/records", sandbox.records_view)
    app.router.add_post("/_sandbox/reset", sandbox.reset)

    async def close_store(app: web.Application) -> None:
        sandbox.store.close()

    app.on_cleanup.append(close_store)
    return app
