"""A stateful fake of Visma.net ERP: the Connect token endpoint and the endpoints the provider uses.

Every API request is checked against Visma's OpenAPI document (the operation exists, its JSON body
is valid); a violation is answered 400 with Visma's error body and kept in ``violations``. Test
controls are methods: ``fail_next``, ``expire_tokens``, ``revoke_credentials``, ``seed_customer``.

GETs answer in the read DTOs' shape (``mainAddress.country.id``, ``customer.number``, a line's
``vatCode.id`` …), each record stamped with a ``lastModifiedDateTime`` that grows on every change.
Webhooks: Visma has no subscription API, so ``configure_webhook`` stands for the Developer Portal;
then every change, ours or a user's (``user_create``/``user_update``), is POSTed in the background,
signed like Visma (base64 HMAC-SHA256 of the body). The payload shape is the one webhooks.py
assumes (unverified): ``{tenantId, event: "Customer.Updated", entityId, lastModifiedDateTime,
changedBy, …}``; ``changedBy`` is the subject of the access token a change was made with
(``API_SUBJECT``, the ``sub`` of every token this fake issues, a JWT as Visma Connect's are), or
``USER_NAME`` for a user's change.

The customer invoices are in ``visma_net_invoices.py``, the wire format (constants, errors, DTO
shapes, paging) in ``visma_net_wire.py``; the names tests use are re-exported here.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import time
import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from providers.visma_net.webhooks import DEFAULT_SIGNATURE_HEADER, signed_headers
from tests.fakes.callbacks import CallbackSender
from tests.fakes.control import PREFIX as CONTROL_PREFIX
from tests.fakes.control import add_control_routes
from tests.fakes.history import WriteLog
from tests.fakes.visma_net_invoices import VismaInvoices
from tests.fakes.visma_net_wire import (
    API_SUBJECT,
    DRAFTS,
    EVENT_NAMES,
    LISTS,
    SPEC_NAME,
    TOKEN_PATH,
    USER_NAME,
    Failure,
    Handler,
    Store,
    dto,
    jwt,
    modified,
    page,
    unknown_fields,
    unwrap,
    visma_error,
)
from tests.openapi import SpecViolation, load_spec

__all__ = [  # the fake's public names, wherever they are defined
    "API_SUBJECT",
    "DRAFTS",
    "EVENT_NAMES",
    "LISTS",
    "SPEC_NAME",
    "TOKEN_PATH",
    "USER_NAME",
    "FakeVismaNet",
    "Handler",
    "jwt",
    "unwrap",
    "visma_error",
]


class FakeVismaNet(VismaInvoices):
    def __init__(self, *, token_lifetime: int = 3600) -> None:
        self.client_id, self.client_secret, self.tenant_id = "cw-integration", "s3cret-value", "tenant-42"
        self.token_lifetime = token_lifetime
        self.expires_in_answer: object = None  # what the token answer says, when not the lifetime
        self.base_url = ""  # set by the test once the app is served
        self.vat_codes = {"1", "3", "5", "6"}
        self.accounts = {"3000", "3100"}
        self.project_templates = {"STANDARD"}
        self.branches = {"1"}
        self.tokens: dict[str, float] = {}
        self.token_requests = 0
        self.requests: list[tuple[str, str]] = []
        self.times: list[float] = []  # time.monotonic() of each request, the throttle's clock
        self.violations: list[str] = []
        self.writes: Counter[str] = Counter()
        self.sent_invoices: set[str] = set()
        self.release_error: str | None = None
        self.stores = {
            "customer": Store("customer", "number", ("number", "name")),
            "supplier": Store("supplier", "number", ("number", "name"), etag=True),
            "project": Store("project", "projectID", ("projectID", "description", "startDate")),
        }
        self.invoices: dict[str, dict[str, Any]] = {}
        self._failures: deque[Failure] = deque()
        self._version = 0
        self._last_stamp = dt.datetime.now(dt.UTC)
        self.callbacks = CallbackSender()
        self.api_writes = WriteLog()  # every write made through the API, as stored after it
        self.webhook: tuple[str, str, str] | None = None
        self.after_api_write: Callable[[str, str], object] | None = None
        """Called with (kind, key) after each API write of a customer, supplier or project, before
        its answer: what a user does in Visma.net at that moment lands before any later read."""

    # test controls

    def fail_next(
        self, n: int = 1, status: int = 503, *, retry_after: str | None = None, message: str = ""
    ) -> None:
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        if status == 429:
            headers |= {"X-RateLimit-Limit": "1000", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "30"}
        for _ in range(n):
            self._failures.append(Failure(status, message or f"injected HTTP {status}", headers))

    def expire_tokens(self) -> None:
        self.tokens = dict.fromkeys(self.tokens, 0.0)

    def revoke_credentials(self) -> None:
        self.client_secret = secrets.token_hex(8)
        self.tokens.clear()

    def seed_customer(self, number: str, name: str = "Seeded AS") -> None:
        self.stores["customer"].records[number] = {"number": number, "name": name, "status": "Active"}

    def configure_webhook(self, url: str, secret: str, header: str = DEFAULT_SIGNATURE_HEADER) -> None:
        """What an operator does in the Visma Developer Portal: one callback for every entity."""
        self.webhook = (url, secret, header)

    def set_webhook(self, url: str, secret: str) -> None:
        self.configure_webhook(url, secret)

    def user_delete(self, kind: str, key: str, /) -> None:
        """A user deletes a record in Visma.net's UI (the API cannot)."""
        record = self.stores[kind].records.pop(key)
        self._emit(kind, "Deleted", key, record, USER_NAME)

    def user_create(self, name: str, record: dict[str, Any]) -> dict[str, Any]:
        """A user creates a customer, supplier or project in Visma.net (fields as the read DTO's, flat)."""
        store = self.stores[name]
        made = self._stamp({"status": "Active", **record})
        store.records[str(made[store.key])] = made
        self._emit(name, "Created", str(made[store.key]), made, USER_NAME)
        return made

    def user_update(self, kind: str, key: str, /, **fields: Any) -> dict[str, Any]:
        """A user edits a record in Visma.net (flat fields, as stored); an invoice only as a draft."""
        if kind == "invoice":
            return self.user_update_invoice(key, **fields)
        record = self._stamp(self.stores[kind].records[key] | fields)
        self.stores[kind].records[key] = record
        self._emit(kind, "Updated", key, record, USER_NAME)
        return record

    def _emit(
        self, name: str, action: str, key: str, record: dict[str, Any], author: str = API_SUBJECT
    ) -> None:
        if self.webhook is None:
            return
        url, secret, header = self.webhook
        event = {
            "tenantId": self.tenant_id,
            "event": f"{EVENT_NAMES[name]}.{action}",
            "entityId": key,
            "eventId": str(uuid.uuid4()),
            "timestamp": dt.datetime.now(dt.UTC).isoformat(),
            "lastModifiedDateTime": record.get("lastModifiedDateTime"),
            "changedBy": author,
        }
        body = json.dumps(event).encode()
        self.callbacks.send(url, body, signed_headers(body, secret, header=header))

    # app

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.on_cleanup.append(self.callbacks.close)
        add_control_routes(app, self)
        app.router.add_post(TOKEN_PATH, self._token)
        for name in self.stores:
            collection, item = f"/v1/{name}", f"/v1/{name}/{{{name}{'ID' if name == 'project' else 'Cd'}}}"
            app.router.add_get(collection, self._bind(self._list, name))
            app.router.add_post(collection, self._bind(self._create, name))
            app.router.add_get(item, self._bind(self._get, name))
        # Parameter names as in the spec's path templates, so the route's canonical path is the template.
        app.router.add_put("/v1/customer/{customerCd}", self._bind(self._update, "customer"))
        app.router.add_put("/v1/supplier/{supplierCd}", self._bind(self._update, "supplier"))
        app.router.add_put("/v1/project/{projectId}", self._bind(self._update, "project"))
        app.router.add_get("/v1/vat", self._catalogue("vatId", lambda: self.vat_codes))
        app.router.add_get("/v1/account", self._catalogue("accountCD", lambda: self.accounts))
        app.router.add_get("/v1/branch", self._catalogue("number", lambda: self.branches))
        self.add_invoice_routes(app.router)
        return app

    @staticmethod
    def _bind(handler: Callable[[web.Request, str], Awaitable[web.Response]], name: str) -> Handler:
        async def bound(request: web.Request) -> web.Response:
            return await handler(request, name)

        return bound

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == TOKEN_PATH or request.path.startswith(CONTROL_PREFIX):
            return await handler(request)
        self.requests.append((request.method, request.path))
        self.times.append(time.monotonic())
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if self.tokens.get(token, 0.0) < time.time():
            return web.json_response(
                {"message": "Authorization has been denied for this request."}, status=401
            )
        if self._failures:
            failure = self._failures.popleft()
            resp = visma_error(failure.status, failure.message)
            resp.headers.update(failure.headers)
            return resp
        problem = await self._spec_problem(request)
        if problem is not None:
            self.violations.append(problem)
            return visma_error(400, problem)
        answer = await handler(request)
        answer.headers.update(
            {"X-RateLimit-Limit": "1000", "X-RateLimit-Remaining": "999", "X-RateLimit-Reset": "60"}
        )
        return answer

    async def _spec_problem(self, request: web.Request) -> str | None:
        resource = request.match_info.route.resource
        template = resource.canonical if resource is not None else request.path
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
            load_spec(SPEC_NAME).validate_request(request.method, template, body)
        except ValueError:
            return f"{request.method} {request.path}: body is not JSON"
        except SpecViolation as exc:
            return str(exc)
        unknown = unknown_fields(template, request.method, body)
        if unknown:
            return f"{request.method} {template}: not in the spec (Visma ignores them): {', '.join(unknown)}"
        paged = {"pageNumber", "pageSize"} <= set(request.query)
        if request.method == "GET" and template in LISTS and not paged:
            return f"GET {request.path}: pageNumber and pageSize are mandatory"
        return None

    async def _token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        form = await request.post()
        if form.get("grant_type") != "client_credentials":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        if (form.get("client_id"), form.get("client_secret")) != (self.client_id, self.client_secret):
            return web.json_response({"error": "invalid_client"}, status=400)
        if form.get("tenant_id") != self.tenant_id:
            return web.json_response(
                {"error": "invalid_request", "error_description": "unknown tenant"}, status=400
            )
        if "vismanet_erp_service_api:read" not in str(form.get("scope", "")).split():
            return web.json_response({"error": "invalid_scope"}, status=400)
        token = jwt({"sub": API_SUBJECT, "client_id": self.client_id, "tenant_id": self.tenant_id})
        self.tokens[token] = time.time() + self.token_lifetime
        expires_in = self.token_lifetime if self.expires_in_answer is None else self.expires_in_answer
        body = {"access_token": token, "expires_in": expires_in, "token_type": "Bearer"}
        return web.json_response(body)

    # customers, suppliers, projects

    def _stamp(self, record: dict[str, Any]) -> dict[str, Any]:
        """A new lastModifiedDateTime, later than every one before (Visma's has milliseconds)."""
        self._version += 1
        now = max(dt.datetime.now(dt.UTC), self._last_stamp + dt.timedelta(milliseconds=1))
        self._last_stamp = now
        record["lastModifiedDateTime"] = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}"
        record["_version"] = self._version
        return record

    def _written(self, store: Store, key: str, status: int, *, location: bool = False) -> web.Response:
        self.writes[store.name] += 1
        resp = web.Response(status=status)
        if location:
            resp.headers["Location"] = f"{self.base_url}/v1/{store.name}/{key}"
        if store.etag:
            resp.headers["ETag"] = f'"{store.records[key]["_version"]}"'
        return resp

    async def _create(self, request: web.Request, name: str) -> web.Response:
        store, data = self.stores[name], unwrap(await request.json())
        missing = [f for f in store.required if not data.get(f)]
        if missing:
            return visma_error(400, f"'{missing[0]}' cannot be empty.")
        key = str(data[store.key])
        if key in store.records:
            return visma_error(400, f"{name.capitalize()} {key} already exists.")
        data.pop("overrideNumberSeries", None)
        store.records[key] = self._stamp({"status": "Active", **data})
        self.api_writes.add(name, key, "created", store.records[key])
        self._emit(name, "Created", key, store.records[key])
        if self.after_api_write is not None:
            self.after_api_write(name, key)
        return self._written(store, key, 201, location=True)

    async def _update(self, request: web.Request, name: str) -> web.Response:
        store = self.stores[name]
        key = next(iter(request.match_info.values()))
        if key not in store.records:
            return visma_error(404, f"{name.capitalize()} {key} not found.")
        store.records[key] = self._stamp({**store.records[key], **unwrap(await request.json())})
        self.api_writes.add(name, key, "updated", store.records[key])
        self._emit(name, "Updated", key, store.records[key])
        if self.after_api_write is not None:
            self.after_api_write(name, key)
        return self._written(store, key, 204)

    async def _get(self, request: web.Request, name: str) -> web.Response:
        record = self.stores[name].records.get(next(iter(request.match_info.values())))
        if record is None:
            return visma_error(404, f"{name.capitalize()} not found.")
        return web.json_response(dto(name, record))

    @staticmethod
    def _catalogue(key: str, keys: Callable[[], set[str]]) -> Handler:
        async def catalogue(request: web.Request) -> web.Response:
            return web.json_response([{key: k} for k in sorted(keys())])

        return catalogue

    async def _list(self, request: web.Request, name: str) -> web.Response:
        if request.query.get("systemTemplate") == "true":
            records = [{"projectID": t, "description": t} for t in sorted(self.project_templates)]
        else:
            records = [r for r in self.stores[name].records.values() if modified(r, request.query)]
        return web.json_response([dto(name, r) for r in page(records, request.query)])
