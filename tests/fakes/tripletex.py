"""A stateful fake of Tripletex API v2 for the provider tests.

Serves the session-token flow, Basic auth, the customer/supplier/project/order/invoice/country
endpoints the provider uses, Tripletex's envelopes, error bodies and rate-limit headers. Every
request is checked against the spec (body schema, query parameter names, required query
parameters); a violation is answered 422 and recorded in ``violations``.

Webhooks: ``POST /event/subscription`` (or ``subscribe``) registers a callback; every change to a
subscribed kind, ours or a user's (``user_create``/``user_update``/``user_delete``), is then POSTed
to its ``targetUrl`` signed with its ``hmacSharedSecret``, in the background. GET responses and
callbacks render references (country, customer, an invoice's orders) as ``fields`` would.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import itertools
import json
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from providers.tripletex.webhooks import signed_headers
from tests.fakes.callbacks import CallbackSender
from tests.fakes.control import PREFIX as CONTROL_PREFIX
from tests.fakes.control import add_control_routes
from tests.fakes.history import WriteLog
from tests.openapi import SpecViolation, load_spec

SPEC = "tripletex-v2.openapi3.json"
CONSUMER_TOKEN = "consumer-abc"
EMPLOYEE_TOKEN = "employee-xyz"
API_EMPLOYEE_ID = 7
USER_EMPLOYEE_ID = 99
"""The employee behind changes made "in Tripletex's UI" (``add`` and the ``user_*`` controls)."""
SUBSCRIPTIONS = "/event/subscription"
EVENTS = (
    *(
        f"{kind}.{verb}"
        for kind in ("customer", "supplier", "project")
        for verb in ("create", "update", "delete")
    ),
    "invoice.charged",
)
COUNTRIES = {"NO": 161, "SE": 200, "DK": 57}
VAT_TYPES = (3, 5, 6, 31)
"""vatType ids the company has (``GET /ledger/vatType``)."""
DEPARTMENTS = (1, 2)
EMPLOYEES = (7, 11, 99)
CURRENCIES = ("NOK", "EUR", "SEK")
CATALOGUES = {
    "ledger/vatType": [{"id": i} for i in VAT_TYPES],
    "department": [{"id": i} for i in DEPARTMENTS],
    "employee": [{"id": i} for i in EMPLOYEES],
    "currency": [{"id": n, "code": c} for n, c in enumerate(CURRENCIES, start=1)],
}
BODY: web.RequestKey[dict[str, Any]] = web.RequestKey("json", dict)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, code: int, message: str, fields: dict[str, str] | None = None) -> web.Response:
    request_id = uuid.uuid4().hex[:12]
    body = {
        "status": status,
        "code": code,
        "message": message,
        "link": None,
        "developerMessage": message,
        "validationMessages": [{"field": k, "message": v} for k, v in (fields or {}).items()] or None,
        "requestId": request_id,
    }
    return web.json_response(body, status=status, headers={"x-tlx-request-id": request_id})


@dataclass
class _Failure:
    status: int
    headers: dict[str, str]
    fields: dict[str, str] | None
    on: str


@dataclass
class FakeTripletex:
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
    _failures: list[_Failure] = field(default_factory=list)
    _conflicts: int = 0
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
        self._failures.extend(_Failure(status, headers, fields, on) for _ in range(count))

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
            "changes": [self._change("CREATE", USER_EMPLOYEE_ID)],
        }
        self.store.setdefault(kind, {})[new["id"]] = new
        return new

    def subscribe(self, url: str, secret: str, events: tuple[str, ...]) -> None:
        """Subscriptions as if made through the API, without a request."""
        for event in events:
            sub_id = next(self._ids)
            self.subscriptions[sub_id] = {
                "id": sub_id,
                "event": event,
                "targetUrl": url,
                "fields": "*,version,changes",
                "hmacSharedSecret": secret,
                "status": "ACTIVE",
            }

    def set_webhook(self, url: str, secret: str) -> None:
        """Subscriptions to every event CW syncs (the control endpoint's ``webhook``)."""
        self.subscribe(url, secret, EVENTS)

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
        found["changes"].append(self._change("UPDATE", USER_EMPLOYEE_ID))
        self._emit(kind, "update", found)
        return found

    def user_delete(self, kind: str, obj_id: int) -> None:
        found = self.store[kind].pop(obj_id)
        self._emit(kind, "delete", found)

    def render(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        """The object as a GET with nested ``fields`` shows it: references carry their numbers."""
        out = copy.deepcopy(obj)
        for key in ("postalAddress", "physicalAddress"):
            address = out.get(key)
            if isinstance(address, dict) and isinstance(address.get("country"), dict):
                country = address["country"].get("id")
                code = next((c for c, i in COUNTRIES.items() if i == country), None)
                address["country"] = {"id": country, "isoAlpha2Code": code}
        ref = out.get("customer")
        ref_id = ref.get("id") if isinstance(ref, dict) else None
        customer = self.store.get("customer", {}).get(ref_id) if isinstance(ref_id, int) else None
        if customer is not None:
            out["customer"] = {"id": customer["id"], "customerNumber": customer.get("customerNumber")}
        if kind == "invoice":
            orders = self.store.get("order", {})
            out["orders"] = [
                self.render("order", orders[o["id"]]) for o in out.get("orders", []) if o["id"] in orders
            ]
        return out

    def _emit(self, kind: str, verb: str, obj: dict[str, Any]) -> None:
        event = "invoice.charged" if kind == "invoice" else f"{kind}.{verb}"
        value = None if verb == "delete" else self.render(kind, obj)
        for sub in self.subscriptions.values():
            if sub["event"] != event or sub["status"] != "ACTIVE":
                continue
            body = json.dumps(
                {"subscriptionId": sub["id"], "event": event, "id": obj["id"], "value": value}
            ).encode()
            key = str(uuid.uuid4())
            if sub.get("hmacSharedSecret"):
                headers = signed_headers(body, sub["hmacSharedSecret"], idempotency_key=key)
            else:
                headers = {"Content-Type": "application/json", "idempotency-key": key}
            self.callbacks.send(sub["targetUrl"], body, headers)

    def callback(self, event: str, kind: str, obj_id: int, secret: str) -> tuple[dict[str, str], bytes]:
        """A signed webhook callback for an object (fields ``*,version,changes``)."""
        value = None if event.endswith(".delete") else self.store[kind][obj_id]
        body = json.dumps({"subscriptionId": 5, "event": event, "id": obj_id, "value": value}).encode()
        return signed_headers(body, secret, idempotency_key=str(uuid.uuid4())), body

    # -- the app --------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.on_cleanup.append(self.callbacks.close)
        add_control_routes(app, self)
        r = app.router
        r.add_get(f"/v2{SUBSCRIPTIONS}", self._list_subscriptions)
        r.add_post(f"/v2{SUBSCRIPTIONS}", self._subscribe)
        r.add_put(f"/v2{SUBSCRIPTIONS}/{{id}}", self._resubscribe)
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
            failed = _error(
                failure.status, 18000 if failure.fields else 1000, "Injected failure", failure.fields
            )
            failed.headers.update(failure.headers)
            return failed
        if path != "/token/session/:create" and not self._authorised(request):
            return _error(401, 3000, "Unauthorized: invalid or expired session token")
        body = await request.json() if request.can_read_body else None
        problem = self._check_against_spec(request.method, path, dict(request.query), body)
        if problem:
            self.violations.append(problem)
            return _error(422, 16000, problem)
        if isinstance(body, dict):
            request[BODY] = body
        response = await handler(request)
        response.headers["X-Rate-Limit-Limit"] = str(self.rate_limit)
        response.headers["X-Rate-Limit-Remaining"] = str(self.rate_remaining)
        response.headers["X-Rate-Limit-Reset"] = str(self.rate_reset)
        return response

    def _check_against_spec(self, method: str, path: str, query: dict[str, str], body: Any) -> str | None:
        spec = load_spec(SPEC)
        try:
            if path.startswith(SUBSCRIPTIONS) and method in ("POST", "PUT"):
                # The spec marks the whole Subscription schema readOnly (a generator quirk: its own
                # descriptions call hmacSharedSecret "write only"), so check it without that flag.
                schema = {k: v for k, v in spec.schema("Subscription").items() if k != "readOnly"}
                spec.validate(schema, body, where=f"{method} {path}")
            else:
                spec.validate_request(method, path, body)
            params = spec.operation(method, path).get("parameters", [])
        except SpecViolation as exc:
            return str(exc)
        known = {p["name"] for p in params if p.get("in") == "query"}
        required = {p["name"] for p in params if p.get("in") == "query" and p.get("required")}
        unknown, missing = sorted(set(query) - known), sorted(required - set(query))
        if unknown or missing:
            return f"{method} {path}: unknown query parameters {unknown}, missing required {missing}"
        return None

    def _authorised(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        _, _, token = base64.b64decode(header[6:]).decode().partition(":")
        expires = self._tokens.get(token)
        return expires is not None and self.today < expires

    def _change(self, kind: str, employee: int = API_EMPLOYEE_ID) -> dict[str, Any]:
        return {"employeeId": employee, "timestamp": dt.datetime.now(dt.UTC).isoformat(), "changeType": kind}

    # -- handlers -----------------------------------------------------------------------------

    async def _create_session(self, request: web.Request) -> web.Response:
        q = request.query
        if self._revoked or q["consumerToken"] != CONSUMER_TOKEN or q["employeeToken"] != EMPLOYEE_TOKEN:
            return _error(403, 9000, "Invalid consumer or employee token")
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
                if _matches(kind, o, request.query) and _changed_since(o, request.query.get("changedSince"))
            ]
        start = int(request.query.get("from", "0"))
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
            return _error(404, 6000, "Object not found")
        return web.json_response({"value": self.render(self._kind(request), found)})

    async def _post(self, request: web.Request) -> web.Response:
        kind, body = self._kind(request), request[BODY]
        if "id" in body or "version" in body:
            return _error(422, 18000, "Validation failed", {"id": "A new object cannot have id or version"})
        duplicate = _duplicate(kind, body, self.objects(kind))
        if duplicate:
            return _error(422, 18000, "Validation failed", {duplicate: "The number is already in use"})
        self.writes[kind] += 1
        new = self.add(kind, body)
        new["changes"] = [self._change("CREATE")]
        self.api_writes.add(kind, new["id"], "created", new)
        self._emit(kind, "create", new)
        return web.json_response({"value": new}, status=201)

    async def _put(self, request: web.Request) -> web.Response:
        found, body = self._found(request), request[BODY]
        if found is None:
            return _error(404, 6000, "Object not found")
        if self._conflicts:
            self._conflicts -= 1
            found["version"] += 1
        if "version" in body and body["version"] != found["version"]:
            return _error(409, 8000, "Revision exception: the object was changed by someone else")
        self.writes[self._kind(request)] += 1
        keep_lines = request.query.get("updateLinesAndGroups") != "true" and "orderLines" in found
        found.update({k: v for k, v in body.items() if not (k == "orderLines" and keep_lines)})
        found["version"] += 1
        found["changes"].append(self._change("UPDATE"))
        self.api_writes.add(self._kind(request), found["id"], "updated", found)
        self._emit(self._kind(request), "update", found)
        return web.json_response({"value": found})

    async def _delete(self, request: web.Request) -> web.Response:
        found = self._found(request)
        if found is None:
            return _error(404, 6000, "Object not found")
        self.writes[self._kind(request)] += 1
        del self.store[self._kind(request)][found["id"]]
        self.api_writes.add(self._kind(request), found["id"], "deleted")
        self._emit(self._kind(request), "delete", found)
        return web.Response(status=204)

    async def _invoice(self, request: web.Request) -> web.Response:
        order = self.store.get("order", {}).get(int(request.match_info["id"]))
        if order is None:
            return _error(404, 6000, "Object not found")
        if any(line.get("isCharged") for line in order.get("orderLines", [])):
            return _error(422, 18000, "Validation failed", {"orderLines": "The order is already invoiced"})
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
        invoice["changes"] = [self._change("CREATE")]
        self._emit("invoice", "charged", invoice)
        return web.json_response({"value": invoice})

    # -- event subscriptions ------------------------------------------------------------------

    async def _list_subscriptions(self, request: web.Request) -> web.Response:
        values = [
            {k: v for k, v in s.items() if k != "hmacSharedSecret"} for s in self.subscriptions.values()
        ]
        return web.json_response(
            {"fullResultSize": len(values), "from": 0, "count": len(values), "values": values}
        )

    def _subscription_problem(self, body: dict[str, Any]) -> web.Response | None:
        target = str(body.get("targetUrl") or "")
        # Tripletex wants absolute HTTPS; the fake lets the loopback address through for tests.
        if not (target.startswith("https://") or target.startswith("http://127.0.0.1")):
            return _error(422, 18000, "Validation failed", {"targetUrl": "Must be absolute and use HTTPS"})
        if not str(body.get("event") or "").count("."):
            return _error(422, 18000, "Validation failed", {"event": "Form should be subject.verb"})
        return None

    async def _subscribe(self, request: web.Request) -> web.Response:
        body = request[BODY]
        problem = self._subscription_problem(body)
        if problem is not None:
            return problem
        sub_id = next(self._ids)
        self.subscriptions[sub_id] = {**body, "id": sub_id, "version": 0, "status": "ACTIVE"}
        self.writes["subscription"] += 1
        shown = {k: v for k, v in self.subscriptions[sub_id].items() if k != "hmacSharedSecret"}
        return web.json_response({"value": shown}, status=201)

    async def _resubscribe(self, request: web.Request) -> web.Response:
        found = self.subscriptions.get(int(request.match_info["id"]))
        body = request[BODY]
        if found is None:
            return _error(404, 6000, "Object not found")
        problem = self._subscription_problem({**found, **body})
        if problem is not None:
            return problem
        found.update({k: v for k, v in body.items() if k not in ("id", "version")})
        found["version"] += 1
        self.writes["subscription"] += 1
        return web.json_response({"value": {k: v for k, v in found.items() if k != "hmacSharedSecret"}})


_NUMBERS = {
    "customer": "customerNumber",
    "supplier": "supplierNumber",
    "project": "number",
    "order": "number",
}


def _duplicate(kind: str, body: dict[str, Any], existing: list[dict[str, Any]]) -> str | None:
    key = _NUMBERS.get(kind)
    if key and body.get(key) is not None and any(o.get(key) == body[key] for o in existing):
        return key
    return None


def _changed_since(obj: dict[str, Any], since: str | None) -> bool:
    """Tripletex's ``changedSince``: the object's latest change is after that time."""
    if since is None:
        return True
    stamps = [c["timestamp"] for c in obj.get("changes", []) if c.get("timestamp")]
    latest = dt.datetime.fromisoformat(stamps[-1]) if stamps else None
    return latest is not None and latest > dt.datetime.fromisoformat(since)


def _in_range(value: str | None, start: str, end: str) -> bool:
    return value is not None and start <= value < end


def _matches(kind: str, obj: dict[str, Any], q: Mapping[str, str]) -> bool:
    if kind == "customer" and "customerAccountNumber" in q:
        return str(obj.get("customerNumber")) in q["customerAccountNumber"].split(",")
    if kind == "supplier" and "supplierNumber" in q:
        return str(obj.get("supplierNumber")) in q["supplierNumber"].split(",")
    if kind == "project" and "number" in q:
        return bool(obj.get("number") == q["number"])
    if kind == "order":
        number_ok = "number" not in q or obj.get("number") == q["number"]
        return number_ok and _in_range(obj.get("orderDate"), q["orderDateFrom"], q["orderDateTo"])
    if kind == "invoice":
        customer_ok = "customerId" not in q or str(obj["customer"]["id"]) == q["customerId"]
        return customer_ok and _in_range(obj.get("invoiceDate"), q["invoiceDateFrom"], q["invoiceDateTo"])
    return True
