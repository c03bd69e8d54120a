"""A fake Contracting Works for the demo and the tests: its Query API and Write API over HTTP.

Records live in memory per client. Like real CW, every write it accepts (ours through the Write
API, or a "user" change made with ``user_change``/``user_delete``) is announced as a CW event
(``source: "frontend"``, the full record as ``data``) through the ``on_event`` callback, so the
caller can put it on the bus: that is the reverse loop the worker must recognise and ignore.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from aiohttp import web
from pydantic import ValidationError

from contracts import Customer, CWRecord, Entity, Invoice, Project, Supplier
from contracts.envelope import describe_errors
from worker.cw.http import CLIENT_HEADER, LIST_OPERATIONS, OPERATIONS

EventSink = Callable[[dict[str, Any]], Awaitable[None]]
RecordKey = tuple[str, str, str]
"""(client id, entity, CW id)."""

RECORD_TYPES: dict[Entity, type[CWRecord]] = {
    Entity.customer: Customer,
    Entity.supplier: Supplier,
    Entity.project: Project,
    Entity.invoice: Invoice,
}
_ENTITY_OF_OPERATION = {operation: entity for entity, operation in OPERATIONS.items()}
_ENTITY_OF_LISTING = {operation: entity for entity, operation in LIST_OPERATIONS.items()}


@dataclass(slots=True)
class CWStats:
    queries: int = 0
    listings: int = 0
    creates: int = 0
    updates: int = 0
    deletes: int = 0
    user_changes: int = 0
    events: int = 0

    @property
    def writes(self) -> int:
        """Writes through the Write API (the worker's), not user changes."""
        return self.creates + self.updates + self.deletes

    def as_json(self) -> dict[str, int]:
        return {
            "queries": self.queries,
            "listings": self.listings,
            "creates": self.creates,
            "updates": self.updates,
            "deletes": self.deletes,
            "writes": self.writes,
            "user_changes": self.user_changes,
            "events": self.events,
        }


@dataclass(frozen=True, slots=True)
class CWWrite:
    """One write accepted through the Write API (the worker's, not a user's): the record as stored
    after it, None for a delete. Tests count echoes and ping-pong from these."""

    client_id: str
    entity: str
    cw_id: str
    action: str
    record: dict[str, Any] | None
    event_id: str
    """The id of the CW event this write caused."""


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class FakeCW:
    """The state and handlers of one fake CW."""

    def __init__(self, *, api_key: str, on_event: EventSink | None = None) -> None:
        self._authorization = f"Bearer {api_key}".encode()
        self.on_event = on_event
        self.records: dict[RecordKey, dict[str, Any]] = {}
        self.versions: dict[RecordKey, int] = {}
        self.stats = CWStats()
        self.api_writes: list[CWWrite] = []
        self._replies: dict[tuple[str, str, str, str], tuple[int, dict[str, Any] | None]] = {}
        self._next_id = 0
        self.changed: dict[RecordKey, tuple[int, dt.datetime]] = {}
        """Each record's place in the change sequence and when it last changed (deletes included)."""
        self._seq = 0

    # -- what a CW user does -------------------------------------------------------------------

    async def user_change(self, client_id: str, entity: Entity, record: dict[str, Any]) -> dict[str, Any]:
        """A change made in CW's frontend: stored, then announced. Returns the stored record."""
        fields = {k: v for k, v in record.items() if k != "id"}
        stored = _validated(entity, record["id"], fields)
        key = (client_id, entity.value, stored["id"])
        action = "updated" if key in self.records else "created"
        self._store(key, stored)
        self.stats.user_changes += 1
        await self._emit(client_id, entity, action, key, stored)
        return stored

    def seed(self, client_id: str, entity: Entity, record: dict[str, Any]) -> None:
        """A record as if made in CW long ago: stored, announced to nobody (benchmarks, fixtures)."""
        fields = {k: v for k, v in record.items() if k != "id"}
        self._store((client_id, entity.value, record["id"]), _validated(entity, record["id"], fields))

    async def user_delete(self, client_id: str, entity: Entity, cw_id: str) -> None:
        key = (client_id, entity.value, cw_id)
        if self.records.pop(key, None) is not None:
            self.versions[key] = self.versions.get(key, 0) + 1
            self._touch(key)
            self.stats.user_changes += 1
            await self._emit(client_id, entity, "deleted", key, None)

    def get(self, client_id: str, entity: Entity, cw_id: str) -> dict[str, Any] | None:
        return self.records.get((client_id, entity.value, cw_id))

    # -- the HTTP handlers ---------------------------------------------------------------------

    def _refusal(self, request: web.Request) -> web.Response | None:
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, self._authorization):
            return _error(401, "Authorization: API key missing or not accepted")
        missing = [h for h in (CLIENT_HEADER, "Idempotency-Key") if not request.headers.get(h)]
        if missing:
            return _error(400, f"missing header(s) {', '.join(missing)}")
        return None

    async def graphql(self, request: web.Request) -> web.Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        try:
            body = await request.json()
            if body["operationName"] in _ENTITY_OF_LISTING:
                return self._listing(request.headers[CLIENT_HEADER], body)
            entity = _ENTITY_OF_OPERATION[body["operationName"]]
            cw_id = body["variables"]["id"]
        except (ValueError, KeyError, TypeError):
            names = ", ".join([*_ENTITY_OF_OPERATION, *_ENTITY_OF_LISTING])
            return web.json_response({"errors": [{"message": f"operationName must be one of {names}"}]})
        self.stats.queries += 1
        record = self.get(request.headers[CLIENT_HEADER], entity, str(cw_id))
        return web.json_response({"data": {entity.value: record}})

    def _listing(self, client_id: str, body: dict[str, Any]) -> web.Response:
        """``<Entity>Changes``: the client's records in change order, a page at a time."""
        entity = _ENTITY_OF_LISTING[body["operationName"]]
        variables = body["variables"]
        first, cursor, since = int(variables["first"]), variables.get("cursor"), variables.get("changedSince")
        after = int(cursor) if cursor else 0
        start = dt.datetime.fromisoformat(since) if since else None
        rows = sorted(
            (seq, at, key)
            for key, (seq, at) in self.changed.items()
            if key[:2] == (client_id, entity.value) and seq > after and (start is None or at >= start)
        )
        self.stats.listings += 1
        page, has_more = rows[:first], len(rows) > first
        items = [
            {
                "id": key[2],
                "sequence": self.versions[key],
                "updated_at": at.isoformat(),
                "deleted": key not in self.records,
                "record": self.records.get(key),
            }
            for _, at, key in page
        ]
        last = page[-1][0] if has_more else max(after, self._seq)
        answer = {"items": items, "next_cursor": str(last), "has_more": has_more}
        return web.json_response({"data": {f"{entity.value}Changes": answer}})

    async def write(self, request: web.Request) -> web.Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        try:
            entity = Entity(request.match_info["entity"])
        except ValueError:
            return _error(404, f"no such entity {request.match_info['entity']!r}")
        client_id = request.headers[CLIENT_HEADER]
        replay = (client_id, request.headers["Idempotency-Key"], request.method, request.path)
        remembered = self._replies.get(replay)
        if remembered is not None:
            return _response(*remembered)
        raw = await request.read()
        # No await from here until the answer is remembered: a repeat cannot interleave.
        cw_id = request.match_info.get("id")
        status, body, event = self._apply(request.method, client_id, entity, cw_id, raw)
        if status < 300:
            self._replies[replay] = (status, body)
        if event is not None:
            action, key, record = event
            event_id = f"cw-{uuid.uuid4()}"
            self.api_writes.append(CWWrite(client_id, entity.value, key[2], action, record, event_id))
            await self._emit(client_id, entity, *event, event_id=event_id)
        return _response(status, body)

    def _apply(
        self, method: str, client_id: str, entity: Entity, cw_id: str | None, raw: bytes
    ) -> tuple[int, dict[str, Any] | None, tuple[str, RecordKey, dict[str, Any] | None] | None]:
        if method == "DELETE":
            key = (client_id, entity.value, cw_id or "")
            if self.records.pop(key, None) is None:
                return 404, {"error": f"{entity.value} {cw_id!r} does not exist"}, None
            self.versions[key] = self.versions.get(key, 0) + 1  # a delete is a new version too
            self._touch(key)
            self.stats.deletes += 1
            return 204, None, ("deleted", key, None)
        try:
            fields = json.loads(raw)
            if not isinstance(fields, dict):
                raise ValueError("the body is not a JSON object")
        except ValueError as exc:
            return 400, {"error": f"body: {exc}"}, None
        if "id" in fields:
            return 422, {"error": "id: the id is CW's; it is not part of the body"}, None
        if cw_id is None:
            self._next_id += 1
            cw_id = f"cw-{entity.value}-{self._next_id}"
        key = (client_id, entity.value, cw_id)
        if method == "PUT" and key not in self.records:
            return 404, {"error": f"{entity.value} {cw_id!r} does not exist"}, None
        try:
            stored = _validated(entity, cw_id, fields)
        except ValueError as exc:
            return 422, {"error": str(exc)}, None
        created = method == "POST"
        self._store(key, stored)
        if created:
            self.stats.creates += 1
        else:
            self.stats.updates += 1
        result = {"id": cw_id, "version": self.versions[key]}
        return (201 if created else 200), result, ("created" if created else "updated", key, stored)

    def _store(self, key: RecordKey, record: dict[str, Any]) -> None:
        self.records[key] = record
        self.versions[key] = self.versions.get(key, 0) + 1
        self._touch(key)

    def _touch(self, key: RecordKey) -> None:
        self._seq += 1
        self.changed[key] = (self._seq, dt.datetime.now(dt.UTC))

    async def _emit(
        self,
        client_id: str,
        entity: Entity,
        action: str,
        key: RecordKey,
        record: dict[str, Any] | None,
        *,
        event_id: str | None = None,
    ) -> None:
        self.stats.events += 1
        if self.on_event is None:
            return
        event: dict[str, Any] = {
            "id": event_id or f"cw-{uuid.uuid4()}",
            "client_id": client_id,
            "type": f"{entity.value}.{action}",
            "source": "frontend",
            "occurred_at": dt.datetime.now(dt.UTC).isoformat(),
            "sequence": self.versions[key],  # CW's row version: orders the record's events
        }
        if record is None:
            event["record_id"] = key[2]
        else:
            event["data"] = record
        await self.on_event(event)

    async def stats_view(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats.as_json())


def _validated(entity: Entity, cw_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The record as CW stores it (normalised JSON); ValueError naming each bad field."""
    try:
        record = RECORD_TYPES[entity].model_validate_json(json.dumps({**fields, "id": cw_id}))
    except ValidationError as exc:
        raise ValueError("; ".join(describe_errors(exc))) from None
    return record.model_dump(mode="json")


def _response(status: int, body: dict[str, Any] | None) -> web.Response:
    return web.Response(status=status) if body is None else web.json_response(body, status=status)


FAKE_CW = web.AppKey("fake_cw", FakeCW)


def create_app(*, api_key: str, on_event: EventSink | None = None) -> web.Application:
    cw = FakeCW(api_key=api_key, on_event=on_event)
    app = web.Application()
    app[FAKE_CW] = cw
    app.router.add_post("/graphql", cw.graphql)
    app.router.add_post("/write/v1/{entity}", cw.write)
    app.router.add_put("/write/v1/{entity}/{id}", cw.write)
    app.router.add_delete("/write/v1/{entity}/{id}", cw.write)
    app.router.add_get("/_cw/stats", cw.stats_view)
    return app


class CWServer:
    """``async with CWServer(api_key="k") as cw: cw.graphql_url, cw.write_url, cw.cw`` on 127.0.0.1."""

    def __init__(self, *, api_key: str, on_event: EventSink | None = None) -> None:
        self.app = create_app(api_key=api_key, on_event=on_event)
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=0.25)
        self.base_url = ""

    @property
    def cw(self) -> FakeCW:
        return self.app[FAKE_CW]

    @property
    def graphql_url(self) -> str:
        return f"{self.base_url}/graphql"

    @property
    def write_url(self) -> str:
        return f"{self.base_url}/write"

    async def __aenter__(self) -> Self:
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._runner.cleanup()
