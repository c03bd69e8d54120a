"""A stateful fake of Tripletex API v2 for the provider tests.

Serves the session-token flow, Basic auth, the customer/supplier/project/order/invoice/country
endpoints the provider uses, Tripletex's envelopes, error bodies and rate-limit headers. Every
request is checked against the spec (body schema, query parameter names, required query
parameters); a violation is answered 422 and recorded in ``violations``.

Webhooks: ``POST /event/subscription`` (or ``subscribe``) registers a callback; every change to a
subscribed kind, ours or a user's (``user_create``/``user_update``/``user_delete``), is then POSTed
to its ``targetUrl`` signed with its ``hmacSharedSecret``, in the background. GET responses and
callbacks render references (country, customer, an invoice's orders) as ``fields`` would.

The wire format (constants, error bodies, the spec check, the list filters) is in
``tripletex_wire.py``, the subscriptions and callbacks in ``tripletex_webhooks.py``; the constants
tests use are re-exported here.
"""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.callbacks import CallbackSender
from tests.fakes.control import PREFIX as CONTROL_PREFIX
from tests.fakes.control import add_control_routes
from tests.fakes.history import WriteLog
from tests.fakes.tripletex_webhooks import TripletexWebhooks
from tests.fakes.tripletex_wire import (
    API_EMPLOYEE_ID,
    BODY,
    CATALOGUES,
    CONSUMER_TOKEN,
    COUNTRIES,
    CURRENCIES,
    DEPARTMENTS,
    EMPLOYEE_TOKEN,
    EMPLOYEES,
    EVENTS,
    SPEC,
    SUBSCRIPTIONS,
    USER_EMPLOYEE_ID,
    VAT_TYPES,
    Failure,
    Handler,
    change_entry,
    changed_since,
    duplicate,
    error,
    matches,
    spec_problem,
)

__all__ = [  # the fake's public names, wherever they are defined
    "API_EMPLOYEE_ID",
    "BODY",
    "CATALOGUES",
    "CONSUMER_TOKEN",
    "COUNTRIES",
    "CURRENCIES",
    "DEPARTMENTS",
    "EMPLOYEES",
    "EMPLOYEE_TOKEN",
    "EVENTS",
    "SPEC",
    "SUBSCRIPTIONS",
    "USER_EMPLOYEE_ID",
    "VAT_TYPES",
    "FakeTripletex",
    "Handler",
]


@dataclass
class FakeTripletex(TripletexWebhooks):
    base_url: str = ""
    """Set by whoever serves the app: ``http://127.0.0.1:<port>/v2``."""
    today: dt.date = field(default_factory=lambda: dt.datetime.now(dt.UTC).date())
    rate_limit: int = 100
    rate_remaining: int = 100
    rate_reset: int = 60
    store: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    writes: Counter[str] = field(default_factory=Counter)
    requests: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    """When each of ``requests`` arrived (``time.monotonic()``, the clock the provider's throttle uses)."""
    violations: list[str] = field(default_factory=list)
    sessions_created: int = 0
    sent_to_customer: dict[int, bool] = field(default_factory=dict)
    _tokens: dict[str, dt.date] = field(default_factory=dict)
    _revoked: bool = False
    _failures: list[Failure] = field(default_factory=list)
    _conflicts: int = 0
    ignore_paging: bool = False
    """Answer every list call with its first page, whatever ``from`` says (a listing never ends)."""
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1001))
    subscriptions: dict[int, dict[str, Any]] = field(default_factory=dict)
    callbacks: CallbackSender = field(default_factory=CallbackSender)
    api_writes: WriteLog = field(default_factory=WriteLog)
    """Every write made through the API, with the object as stored after it."""

    # -- test controls ------------------------------------------------------------------------

    def fail_next(
        self,
        count: int,
        status: int,
        *,
        on: str = "",
        reset: int | None = 3,
        fields: dict[str, str] | None = None,
    ) -> None:
        """Answer the next ``count`` calls starting with ``on`` ("POST /customer") with ``status``.

        The error carries the rate headers (a 429 says none remain; ``reset=None`` leaves
        X-Rate-Limit-Reset out) and, with ``fields``, Tripletex's validationMessages.
        """
        remaining = "0" if status == 429 else str(self.rate_remaining)
        headers = {"X-Rate-Limit-Limit": str(self.rate_limit), "X-Rate-Limit-Remaining": remaining}
        if reset is not None:
            headers["X-Rate-Limit-Reset"] = str(reset)
        self._failures.extend(Failure(status, headers, fields, on) for _ in range(count))

    def expire_tokens(self) -> None:
        self._tokens.clear()

    def revoke(self) -> None:
        """The employee token is deleted in Tripletex: no session works, no new one is issued."""
        self._revoked = True
        self._tokens.clear()

    def conflict_next_puts(self, count: int) -> None:
        """Someone edits the object in Tripletex just before each of our next ``count`` PUTs."""
        self._conflicts = count

    def objects(self, kind: str) -> list[dict[str, Any]]:
        return list(self.store.get(kind, {}).values())

    def add(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Put an object in place as if made in Tripletex's UI (no write counted, no callback)."""
        new = {
            **obj,
            "id": next(self._ids),
            "version": 0,
            "changes": [change_entry("CREATE", USER_EMPLOYEE_ID)],
        }
        self.store.setdefault(kind, {})[new["id"]] = new
        return new

    def user_create(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        """A user creates an object in Tripletex: stored, and subscribers are called."""
        new = self.add(kind, obj)
        self._emit(kind, "create", new)
        return new

    def user_update(self, kind: str, obj_id: int, /, **fields: Any) -> dict[str, Any]:
        """A user edits an object in Tripletex: a new version by another employee, then callbacks."""
        found = self.store[kind][obj_id]
        found.update(fields)
        found["version"] += 1
        found["changes"].append(change_entry("UPDATE", USER_EMPLOYEE_ID))
        self._emit(kind, "update", found)
        return found

    def user_delete(self, kind: str, obj_id: int) -> None:
        found = self.store[kind].pop(obj_id)
        self._emit(kind, "delete", found)

    # -- the app --------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.on_cleanup.append(self.callbacks.close)
        add_control_routes(app, self)
        r = app.router
        self.add_subscription_routes(r)
        r.add_put("/v2/token/session/:create", self._create_session)
        r.add_get("/v2/token/session/>whoAmI", self._who_am_i)
        r.add_get("/v2/country", self._list)
        for catalogue in CATALOGUES:
            r.add_get(f"/v2/{catalogue}", self._catalogue)
        for kind in ("customer", "supplier", "project", "order", "invoice"):
            r.add_get(f"/v2/{kind}", self._list)
            r.add_get(f"/v2/{kind}/{{id}}", self._get)
        for kind in ("customer", "supplier", "project", "order"):
            r.add_post(f"/v2/{kind}", self._post)
            r.add_put(f"/v2/{kind}/{{id}}", self._put)
            r.add_delete(f"/v2/{kind}/{{id}}", self._delete)
        r.add_put("/v2/order/{id}/:invoice", self._invoice)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(CONTROL_PREFIX):
            return await handler(request)
        path = request.path.removeprefix("/v2")
        self.requests.append(f"{request.method} {path}")
        self.times.append(time.monotonic())
        failure = next((f for f in self._failures if self.requests[-1].startswith(f.on)), None)
        if failure is not None:
            self._failures.remove(failure)
            failed = error(
                failure.status, 18000 if failure.fields else 1000, "Injected failure", failure.fields
            )
            failed.headers.update(failure.headers)
            return failed
        if path != "/token/session/:create" and not self._authorised(request):
            return error(401, 3000, "Unauthorized: invalid or expired session token")
        body = await request.json() if request.can_read_body else None
        problem = spec_problem(request.method, path, dict(request.query), body)
        if problem:
            self.violations.append(problem)
            return error(422, 16000, problem)
        if isinstance(body, dict):
            request[BODY] = body
        response = await handler(request)
        response.headers["X-Rate-Limit-Limit"] = str(self.rate_limit)
        response.headers["X-Rate-Limit-Remaining"] = str(self.rate_remaining)
        response.headers["X-Rate-Limit-Reset"] = str(self.rate_reset)
        return response

    def _authorised(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        _, _, token = base64.b64decode(header[6:]).decode().partition(":")
        expires = self._tokens.get(token)
        return expires is not None and self.today < expires

    # -- handlers -----------------------------------------------------------------------------

    async def _create_session(self, request: web.Request) -> web.Response:
        q = request.query
        if self._revoked or q["consumerToken"] != CONSUMER_TOKEN or q["employeeToken"] != EMPLOYEE_TOKEN:
            return error(403, 9000, "Invalid consumer or employee token")
        expires = dt.date.fromisoformat(q["expirationDate"])
        token = uuid.uuid4().hex
        self._tokens[token] = expires
        self.sessions_created += 1
        return web.json_response({"value": {"token": token, "expirationDate": expires.isoformat()}})

    async def _who_am_i(self, request: web.Request) -> web.Response:
        employee = {"id": API_EMPLOYEE_ID, "firstName": "API", "lastName": "Integration"}
        return web.json_response(
            {"value": {"employeeId": API_EMPLOYEE_ID, "companyId": 42, "employee": employee}}
        )

    def _kind(self, request: web.Request) -> str:
        return request.path.removeprefix("/v2/").split("/")[0]

    def _found(self, request: web.Request) -> dict[str, Any] | None:
        return self.store.get(self._kind(request), {}).get(int(request.match_info["id"]))

    async def _list(self, request: web.Request) -> web.Response:
        kind = self._kind(request)
        if kind == "country":
            code = request.query.get("code", "")
            values = [{"id": COUNTRIES[code]}] if code in COUNTRIES else []
        else:
            values = [
                o
                for o in self.objects(kind)
                if matches(kind, o, request.query) and changed_since(o, request.query.get("changedSince"))
            ]
        start = 0 if self.ignore_paging else int(request.query.get("from", "0"))
        page = values[start : start + int(request.query.get("count", "1000"))]
        if kind != "country":
            page = [self.render(kind, o) for o in page]
        return web.json_response(
            {"fullResultSize": len(values), "from": start, "count": len(page), "values": page}
        )

    async def _catalogue(self, request: web.Request) -> web.Response:
        values = CATALOGUES[request.path.removeprefix("/v2/")]
        size = len(values)
        return web.json_response({"fullResultSize": size, "from": 0, "count": size, "values": values})

    async def _get(self, request: web.Request) -> web.Response:
        found = self._found(request)
        if found is None:
            return error(404, 6000, "Object not found")
        return web.json_response({"value": self.render(self._kind(request), found)})

    async def _post(self, request: web.Request) -> web.Response:
        kind, body = self._kind(request), request[BODY]
        if "id" in body or "version" in body:
            return error(422, 18000, "Validation failed", {"id": "A new object cannot have id or version"})
        taken = duplicate(kind, body, self.objects(kind))
        if taken:
            return error(422, 18000, "Validation failed", {taken: "The number is already in use"})
        self.writes[kind] += 1
        new = self.add(kind, body)
        new["changes"] = [change_entry("CREATE")]
        self.api_writes.add(kind, new["id"], "created", new)
        self._emit(kind, "create", new)
        return web.json_response({"value": new}, status=201)

    async def _put(self, request: web.Request) -> web.Response:
        found, body = self._found(request), request[BODY]
        if found is None:
            return error(404, 6000, "Object not found")
        if self._conflicts:
            self._conflicts -= 1
            found["version"] += 1
        if "version" in body and body["version"] != found["version"]:
            return error(409, 8000, "Revision exception: the object was changed by someone else")
        self.writes[self._kind(request)] += 1
        keep_lines = request.query.get("updateLinesAndGroups") != "true" and "orderLines" in found
        found.update({k: v for k, v in body.items() if not (k == "orderLines" and keep_lines)})
        found["version"] += 1
        found["changes"].append(change_entry("UPDATE"))
        self.api_writes.add(self._kind(request), found["id"], "updated", found)
        self._emit(self._kind(request), "update", found)
        return web.json_response({"value": found})

    async def _delete(self, request: web.Request) -> web.Response:
        found = self._found(request)
        if found is None:
            return error(404, 6000, "Object not found")
        self.writes[self._kind(request)] += 1
        del self.store[self._kind(request)][found["id"]]
        self.api_writes.add(self._kind(request), found["id"], "deleted")
        self._emit(self._kind(request), "delete", found)
        return web.Response(status=204)

    async def _invoice(self, request: web.Request) -> web.Response:
        order = self.store.get("order", {}).get(int(request.match_info["id"]))
        if order is None:
            return error(404, 6000, "Object not found")
        if any(line.get("isCharged") for line in order.get("orderLines", [])):
            return error(422, 18000, "Validation failed", {"orderLines": "The order is already invoiced"})
        for line in order.get("orderLines", []):
            line["isCharged"] = True
        self.writes["invoice"] += 1
        invoice = self.add(
            "invoice",
            {
                "invoiceNumber": len(self.objects("invoice")) + 1,
                "invoiceDate": request.query["invoiceDate"],
                "invoiceDueDate": (
                    dt.date.fromisoformat(request.query["invoiceDate"])
                    + dt.timedelta(days=int(order.get("invoicesDueIn") or 0))
                ).isoformat(),
                "currency": {"id": 1, "code": "NOK"},
                "customer": order["customer"],
                "orders": [{"id": order["id"]}],
            },
        )
        self.sent_to_customer[invoice["id"]] = request.query.get("sendToCustomer", "true") == "true"
        invoice["changes"] = [change_entry("CREATE")]
        self._emit("invoice", "charged", invoice)
        return web.json_response({"value": invoice})
