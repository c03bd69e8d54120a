"""A stateful fake of Uni Economy: the login host's private_key_jwt token endpoint and /api/biz entities.

Every request is checked against uni-economy-2019.swagger2.json (violations answer 400 and are kept in
``violations``). Test controls are methods: ``fail_next``, ``expire_tokens``, ``revoke``, ``writes``.

Webhooks: event plans written to ``/eventplans`` (or ``add_event_plan``) are honoured: every change to
a customer, supplier, project or invoice, ours or a user's (``user_create``/``user_update``/
``user_delete``), is POSTed to the plan's subscribers, signed with its ``SigningKey``, in the
background. ``expand`` also follows ``…ID`` references (``Items.VatType``, ``Customer`` …).

The login host (tokens, client assertions, the bearer check) is in ``uni_economy_login.py``, the
wire format (constants, seed data, errors, filters, ``expand``) in ``uni_economy_wire.py``; the
names tests use are re-exported here.
"""

from __future__ import annotations

import copy
import datetime as dt
import itertools
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from providers.uni_economy.webhooks import sign
from tests.fakes import serve_app
from tests.fakes.callbacks import CallbackSender
from tests.fakes.control import add_control_routes
from tests.fakes.history import WriteLog
from tests.fakes.uni_economy_login import Client, UniLogin
from tests.fakes.uni_economy_wire import (
    API_PREFIX,
    API_USER,
    ASSERTION_TYPE,
    DRAFT,
    EVENT_EXPAND,
    EVENT_NAMES,
    FILTER,
    INVOICED,
    OTHER_USER,
    RELATIONS,
    SEED,
    SPEC_NAME,
    Store,
    error,
    holds,
    shape,
    uni_spec,
)
from tests.openapi import SpecViolation

__all__ = [  # the fake's public names, wherever they are defined
    "API_PREFIX",
    "API_USER",
    "ASSERTION_TYPE",
    "DRAFT",
    "EVENT_EXPAND",
    "EVENT_NAMES",
    "FILTER",
    "INVOICED",
    "OTHER_USER",
    "RELATIONS",
    "SEED",
    "SPEC_NAME",
    "FakeUni",
    "Store",
    "uni_spec",
]


@dataclass
class FakeUni(UniLogin):
    company_key: str = "company-key-1"
    token_lifetime_s: int = 3600
    expires_in_answer: object = None
    base_url: str = ""
    violations: list[str] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # time.monotonic() of each request, the throttle's clock
    writes: Counter[str] = field(default_factory=Counter)
    token_requests: int = 0
    assertion_headers: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._clients: dict[str, Client] = {}
        self._tokens: dict[str, tuple[str, float]] = {}
        self._jtis: set[str] = set()
        self._failures: list[tuple[int, str | None, str, str]] = []
        self._ids = itertools.count(1000)
        self._invoice_numbers = itertools.count(100001)
        self.store: dict[str, dict[int, dict[str, Any]]] = {
            name: {row["ID"]: dict(row) for row in rows} for name, rows in SEED.items()
        }
        self.callbacks = CallbackSender()
        self.api_writes = WriteLog()  # every write made through the API, as stored after it

    # --- test controls ------------------------------------------------------------------------
    def fail_next(
        self, n: int, status: int, *, retry_after: str | None = None, message: str = "", on: str = ""
    ) -> None:
        """Answer the next ``n`` requests starting with ``on`` (``"PUT /customers"``) with ``status``."""
        self._failures += [(status, retry_after, message or f"fake failure {status}", on)] * n

    def entities(self, collection: str) -> list[dict[str, Any]]:
        return list(self.store.get(collection, {}).values())

    def add_event_plan(
        self, url: str, secret: str, models: str = "Customer,Supplier,Project,CustomerInvoice"
    ) -> None:
        """An active event plan as if posted to /eventplans."""
        plan = {
            "Name": "test",
            "Active": True,
            "ModelFilter": models,
            "OperationFilter": "CUD",
            "SigningKey": secret,
        }
        plan["Subscribers"] = [{"Name": "test", "Active": True, "Endpoint": url}]
        entity = self._with_ids(plan)
        self.store.setdefault("eventplans", {})[entity["ID"]] = entity

    def set_webhook(self, url: str, secret: str) -> None:
        self.add_event_plan(url, secret)

    def user_create(self, collection: str, entity: dict[str, Any]) -> dict[str, Any]:
        """A user creates an entity in Uni's UI: stored under their identity, then the event plans run."""
        made = self._with_ids({**copy.deepcopy(entity), "CreatedBy": OTHER_USER})
        self.store.setdefault(collection, {})[made["ID"]] = made
        self._emit(collection, "Create", made)
        return made

    def user_update(self, collection: str, entity_id: int, /, **fields: Any) -> dict[str, Any]:
        """A user edits an entity in Uni's UI (top-level fields; ``Info`` etc. as whole objects)."""
        entity = self.store[collection][entity_id]
        self._merge(entity, fields)
        entity.update(UpdatedAt=dt.datetime.now(dt.UTC).isoformat(), UpdatedBy=OTHER_USER)
        self._emit(collection, "Update", entity)
        return entity

    def user_delete(self, collection: str, entity_id: int) -> None:
        self._emit(collection, "Delete", self.store[collection].pop(entity_id))

    def shaped(self, collection: str, entity: dict[str, Any], expand: str) -> dict[str, Any]:
        return shape(entity, set(expand.split(",")), store=self.store)

    def _emit(self, collection: str, event_type: str, entity: dict[str, Any]) -> None:
        name = EVENT_NAMES.get(collection)
        if name is None:
            return
        for plan in self.entities("eventplans"):
            models = {m.strip() for m in str(plan.get("ModelFilter") or "").split(",") if m.strip()}
            if not plan.get("Active") or (models and name not in models):
                continue
            if event_type[0] not in str(plan.get("OperationFilter") or "CUD"):
                continue
            event = {
                "EntityName": name,
                "EventType": event_type,
                "EntityID": entity["ID"],
                "Entity": None
                if event_type == "Delete"
                else self.shaped(collection, entity, EVENT_EXPAND[collection]),
            }
            body = json.dumps(event).encode()
            headers = {"Content-Type": "application/json", **sign(body, str(plan.get("SigningKey") or ""))}
            for subscriber in plan.get("Subscribers") or []:
                if subscriber.get("Active", True) and subscriber.get("Endpoint"):
                    self.callbacks.send(subscriber["Endpoint"], body, headers)

    @property
    def token_url(self) -> str:
        return self.base_url + "/connect/token"

    @asynccontextmanager
    async def serve(self) -> AsyncIterator[FakeUni]:
        app = web.Application()
        app.on_cleanup.append(self.callbacks.close)
        add_control_routes(app, self)
        app.router.add_post("/connect/token", self._token)
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self._api)
        async with serve_app(app) as url:
            self.base_url = url
            yield self

    # --- /api/biz -----------------------------------------------------------------------------
    async def _api(self, request: web.Request) -> web.Response:
        action = request.query.get("action")
        spec_path = "/" + request.match_info["tail"] + (f"?action={action}" if action else "")
        self.requests.append((request.method, spec_path))
        self.times.append(time.monotonic())
        failure = next((f for f in self._failures if f"{request.method} {spec_path}".startswith(f[3])), None)
        if failure is not None:
            self._failures.remove(failure)
            status, retry_after, message, _ = failure
            headers = {"Retry-After": retry_after} if retry_after else None
            return error(status, message, ("Entity", message), headers=headers)
        denied = self._denied(request)
        if denied is not None:
            return denied
        try:
            body = await request.json() if request.body_exists else None
            uni_spec().validate_request(request.method, spec_path, body)
        except (ValueError, SpecViolation) as exc:
            self.violations.append(f"{request.method} {spec_path}: {exc}")
            return error(400, "Request does not match the API", ("body", str(exc)))
        return self._dispatch(request, request.match_info["tail"].strip("/").split("/"), body)

    def _dispatch(self, request: web.Request, parts: list[str], body: Any) -> web.Response:
        method, action, collection = request.method, request.query.get("action"), parts[0]
        if collection == "users" and action == "current-session":
            return web.json_response({"ID": 7, "DisplayName": "CW Integration", "GlobalIdentity": API_USER})
        if len(parts) == 1 and method == "GET":
            return web.json_response(self._query(collection, request.query))
        if len(parts) == 1 and method == "POST":
            return self._create(collection, body)
        entity = self.store.get(collection, {}).get(int(parts[1])) if parts[1].isdigit() else None
        if entity is None:
            return error(404, f"{collection} {parts[1]} not found")
        if method == "GET":
            return web.json_response(self.shaped(collection, entity, request.query.get("expand", "")))
        return self._change(collection, entity, method, action, body)

    def _query(self, collection: str, query: Any) -> list[dict[str, Any]]:
        rows = self.entities(collection)
        if "filter" in query:
            clauses = [FILTER.match(part) for part in query["filter"].split(" or ")]
            if not all(clauses):
                raise web.HTTPBadRequest(
                    text=f"fake understands only 'Field eq|gt value [or …]', not {query['filter']!r}"
                )
            rows = [r for r in rows if any(holds(r, m) for m in clauses if m is not None)]
        skip, top = int(query.get("skip", 0)), int(query.get("top", 100))
        return [self.shaped(collection, r, query.get("expand", "")) for r in rows[skip : skip + top]]

    def _create(self, collection: str, body: dict[str, Any]) -> web.Response:
        if collection in ("customers", "suppliers") and not (body.get("Info") or {}).get("Name"):
            return error(400, "Validation failed", ("Info.Name", "Name is required"))
        entity = self._with_ids(copy.deepcopy(body))
        if collection == "invoices":
            entity["StatusCode"] = DRAFT
        self.store.setdefault(collection, {})[entity["ID"]] = entity
        self.writes[collection] += 1
        self.api_writes.add(collection, entity["ID"], "created", entity)
        self._emit(collection, "Create", entity)
        return web.json_response(shape(entity, set()), status=201)

    def _change(
        self, collection: str, entity: dict[str, Any], method: str, action: str | None, body: Any
    ) -> web.Response:
        if collection == "invoices" and entity.get("StatusCode") != DRAFT:
            return error(400, "Only a draft invoice can be changed", ("StatusCode", "Invoice is not a draft"))
        self.writes[collection] += 1
        if method == "DELETE":
            del self.store[collection][entity["ID"]]
            self.api_writes.add(collection, entity["ID"], "deleted")
            self._emit(collection, "Delete", entity)
            return web.json_response(shape(entity, set()))
        if method == "POST" and collection == "invoices" and action == "invoice":
            entity.update(StatusCode=INVOICED, InvoiceNumber=str(next(self._invoice_numbers)))
            self._emit(collection, "Update", entity)
            return web.json_response({})
        if method == "PUT":
            self._merge(entity, body)
            entity.update(UpdatedAt=dt.datetime.now(dt.UTC).isoformat(), UpdatedBy=API_USER)
            self.api_writes.add(collection, entity["ID"], "updated", entity)
            self._emit(collection, "Update", entity)
            return web.json_response(shape(entity, set()))
        return error(501, f"the fake does not implement {method} on {collection}")

    def _with_ids(self, node: dict[str, Any]) -> dict[str, Any]:
        """New objects get an ID, like Uni does for every nested object sent without one."""
        node.setdefault("ID", next(self._ids))
        node.setdefault("CreatedAt", dt.datetime.now(dt.UTC).isoformat())
        node.setdefault("CreatedBy", API_USER)
        for value in node.values():
            for child in value if isinstance(value, list) else [value]:
                if isinstance(child, dict):
                    self._with_ids(child)
        return node

    def _merge(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        for key, value in new.items():
            current = old.get(key)
            if isinstance(value, dict):
                same = isinstance(current, dict) and value.get("ID") == current.get("ID")
                old[key] = current if same else self._with_ids({})
                self._merge(old[key], value)
            elif isinstance(value, list) and value and isinstance(value[0], dict):
                old[key] = self._merge_list(current if isinstance(current, list) else [], value)
            else:
                old[key] = value

    def _merge_list(self, old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
        by_id = {item["ID"]: item for item in old}
        for item in new:
            if item.get("Deleted") and item.get("ID") in by_id:
                del by_id[item["ID"]]
            elif item.get("ID") in by_id:
                self._merge(by_id[item["ID"]], item)
            else:
                fresh = self._with_ids(copy.deepcopy(item))
                by_id[fresh["ID"]] = fresh
        return list(by_id.values())
