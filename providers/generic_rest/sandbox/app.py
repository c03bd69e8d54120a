"""The sandbox ERP's HTTP application: the interface of contracts/generic_rest.openapi.json and a
tiny control API under ``/_sandbox`` (no auth) that tests and the demo use to inject failures
and read what happened.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import json
import random
from collections import Counter, deque
from dataclasses import dataclass, field, replace
from typing import Any

from aiohttp import web

from providers.generic_rest.sandbox.firing import WebhookSender
from providers.generic_rest.sandbox.rules import RequestRules, load_document
from providers.generic_rest.sandbox.store import Reply, Store, StoredRecord, open_store


@dataclass(slots=True)
class Stats:
    requests: int = 0
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


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def _reply(reply: Reply) -> web.Response:
    if reply.body is None:
        return web.Response(status=reply.status)
    return web.json_response(reply.body, status=reply.status)


#: the key of a record created in the ERP by a user: CW has no id for it (the webhook names none).
ERP_CREATED = "erp:"
_ENTITIES = ("customer", "supplier", "project", "invoice")


class Sandbox:
    """The state behind one sandbox app: records, answers per Idempotency-Key, counters, failures.

    Every change, ours through the interface (author ``api_user``) or a user's through
    ``/_sandbox/user-change``, fires a signed webhook once a subscription is set.
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
        self.api_user = api_user
        self.webhooks = WebhookSender()

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
        # Every state change made through the interface passes here: announce it as ours.
        self.stats.writes[f"{record.entity}/{record.cw_id}"] += 1
        setattr(self.stats, kind, getattr(self.stats, kind) + 1)
        action = {"creates": "created", "updates": "updated", "deletes": "deleted"}[kind]
        self._announce(record, action, self.api_user)

    def _announce(self, record: StoredRecord, action: str, author: str) -> None:
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
        if entity not in _ENTITIES:
            return 400, {"error": f"entity must be one of {', '.join(_ENTITIES)}"}
        if not spec.get("delete") and not isinstance(data, dict):
            return 400, {"error": "data (the record, in CW's shape) is required unless delete is true"}
        if cw_id is None:
            if spec.get("delete"):
                return 400, {"error": "delete needs the cw_id of the record"}
            assert isinstance(data, dict)
            external_id = self.store.next_external_id(entity)
            fields = {k: v for k, v in data.items() if k != "id"}
            record = StoredRecord(entity, f"{ERP_CREATED}{external_id}", external_id, 1, fields)
            action = "created"
        else:
            existing = self.store.get(entity, str(cw_id))
            if existing is None or existing.deleted:
                return 404, {"error": f"{entity} {cw_id!r} does not exist"}
            if spec.get("delete"):
                record, action = replace(existing, version=existing.version + 1, deleted=True), "deleted"
            else:
                assert isinstance(data, dict)
                body = {**data, "id": existing.cw_id}
                problem = self.rules.body_problem(entity, existing.cw_id, body)
                if problem is not None:
                    return 422, {"error": problem}
                record, action = replace(existing, version=existing.version + 1, data=body), "updated"
        self.store.save(record)
        self.stats.user_changes += 1
        self._announce(record, action, author)
        return 200, {"external_id": record.external_id, "version": record.version}

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

    async def user_change_view(self, request: web.Request) -> web.Response:
        try:
            spec = await request.json()
        except ValueError:
            return _error(400, "body: not valid JSON")
        if not isinstance(spec, dict):
            return _error(400, "body must be a JSON object")
        status, body = self.user_change(spec)
        return web.json_response(body, status=status)

    async def webhook_view(self, request: web.Request) -> web.Response:
        """``{"url": "…", "secret": "whsec_…"}``: where every change is announced from now on."""
        try:
            spec = await request.json()
            self.webhooks.subscribe(str(spec["url"]), str(spec["secret"]))
        except (ValueError, KeyError, TypeError) as exc:
            return _error(400, f"webhook needs {{'url': 'http…', 'secret': 'whsec_…'}}: {exc}")
        return web.json_response(self.webhooks.as_json())

    async def webhook_stats_view(self, request: web.Request) -> web.Response:
        """The subscription, webhooks sent, failed and pending, and the user changes made."""
        return web.json_response({**self.webhooks.as_json(), "user_changes": self.stats.user_changes})

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
    api_user: str = "cwi",
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
) -> web.Application:
    """The sandbox ERP as an aiohttp application; ``app[SANDBOX]`` is its state."""
    sandbox = Sandbox(
        token=token,
        latency_ms=latency_ms,
        fail_rate=fail_rate,
        seed=seed,
        store=open_store(db_path),
        api_user=api_user,
    )
    if webhook_url is not None and webhook_secret is not None:
        sandbox.webhooks.subscribe(webhook_url, webhook_secret)
    app = web.Application()
    app[SANDBOX] = sandbox
    for method in ("PUT", "GET", "DELETE"):
        app.router.add_route(method, "/v1/{entity}/{cw_id}", sandbox.interface)
    app.router.add_post("/_sandbox/fail-next", sandbox.fail_next)
    app.router.add_get("/_sandbox/stats", sandbox.stats_view)
    app.router.add_get("/_sandbox/records", sandbox.records_view)
    app.router.add_post("/_sandbox/reset", sandbox.reset)
    app.router.add_post("/_sandbox/user-change", sandbox.user_change_view)
    app.router.add_post("/_sandbox/webhook", sandbox.webhook_view)
    app.router.add_get("/_sandbox/webhook", sandbox.webhook_stats_view)

    async def close_store(app: web.Application) -> None:
        await sandbox.webhooks.close()
        sandbox.store.close()

    app.on_cleanup.append(close_store)
    return app
