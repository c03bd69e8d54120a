"""The admin API: everything the operator console does, as JSON over HTTP (OpenAPI at /openapi.json).

Mounted by the ingress under ``/admin``. Every request needs a key as ``Authorization: Bearer <key>``
or ``X-Admin-Key: <key>``: ``CWI_ADMIN_API_KEY`` (role admin), ``CWI_OPERATOR_API_KEY`` (operator:
replays, purges, edits, connection tests) or ``CWI_VIEWER_API_KEY`` (viewer: reading). Without a
configured admin key every request is refused. Keys are compared in constant time and never logged.

    GET  /dlq?client=&reason=&type=&since=&limit=      list and summary
    GET  /dlq/{id}                                     one dead letter with its history
    POST /dlq/replay  {"ids": [...] | "all": true, filters, "dry_run", "operator"}
    POST /dlq/purge   {"ids": [...] | "older_than": "7d", filters, "dry_run", "operator"}

and the console's operations (``worker/ingress/admin_routes.py``), the webhook subscriptions of
third parties (``admin_subscriptions.py``); the document: ``openapi.py``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from pydantic import SecretStr, ValidationError
from sqlalchemy.exc import DataError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from worker.buses.base import Bus
from worker.console.auth import key_label, role_of_key
from worker.db import Database, refused_value
from worker.ingress.admin_routes import _json as _body
from worker.ingress.admin_routes import console_routes
from worker.ingress.admin_subscriptions import subscription_routes
from worker.ingress.bodies import BodyTooLarge
from worker.ingress.openapi import openapi_document
from worker.logging import get_logger
from worker.operators.actors import Actor, Forbidden
from worker.operators.definitions import DefinitionError
from worker.operators.dlq import DeadLetterOperations, Outcome
from worker.operators.edits import EditError
from worker.operators.letters import (
    Letter,
    Selection,
    SelectionError,
    SelectionRequest,
    describe_invalid,
    grouped,
)
from worker.operators.provisioning import ProvisioningError
from worker.settings import Settings

log = get_logger()

DEFAULT_OPERATOR = "admin-api"
_FILTERS = ("client", "reason", "type", "since")


class BadRequest(Exception):
    pass


def _presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("x-admin-key")


class _RequireKey(BaseHTTPMiddleware):
    """The key's role, as ``request.state.actor``; 401 without a valid key, 503 without an admin key."""

    def __init__(self, app: Any, settings: Settings) -> None:
        super().__init__(app)
        self._settings = settings

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        if self._settings.admin_api_key is None or not self._settings.admin_api_key.get_secret_value():
            return _error(
                503, "the admin API is disabled: no operator key is configured (set CWI_ADMIN_API_KEY)"
            )
        presented = _presented_key(request)
        role = role_of_key(self._settings, presented)
        if presented is None or role is None:
            log.warning("admin request refused", path=request.url.path, key_given=presented is not None)
            headers = {"WWW-Authenticate": 'Bearer realm="cwi-admin"'}
            return _error(401, "a valid operator key is required (Authorization: Bearer <key>)", headers)
        name = request.headers.get("x-operator") or key_label(presented)
        request.state.actor = Actor(name[:64], role, via="admin-api")
        return await call_next(request)


def actor(request: Request) -> Actor:
    found: Actor = request.state.actor
    return found


def _key_settings(api_key: SecretStr | str | None) -> Settings:
    key = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
    return Settings(admin_api_key=key, operator_api_key=None, viewer_api_key=None)


async def too_large(_request: Request, exc: Exception) -> Response:
    return _error(413, str(exc))


async def refused(_request: Request, exc: Exception) -> Response:
    """A value the database cannot take (a NUL character in a query on PostgreSQL): 400, one line."""
    assert isinstance(exc, DataError)
    return _error(400, refused_value(exc))


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class Invalid(Exception):
    """A parameter that does not validate: 422 naming the field."""


def _selection(values: Mapping[str, Any], ids: list[str] | None = None) -> Selection:
    """The same model the CLI's options go through (``SelectionRequest``)."""
    given = {k: v for k, v in values.items() if v is not None}
    try:
        return SelectionRequest.model_validate({**given, "ids": ids}).selection()
    except ValidationError as exc:
        raise Invalid(describe_invalid(exc)) from None
    except SelectionError as exc:
        raise Invalid(str(exc)) from None


def _ids(body: Mapping[str, Any]) -> list[str] | None:
    ids = body.get("ids")
    if ids is None:
        return None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise BadRequest("ids must be a list of transport message ids")
    return ids


Act = Callable[[DeadLetterOperations, Letter], Awaitable[Outcome]]


def admin_app(
    db: Database, bus: Bus, settings: Settings | None = None, *, api_key: SecretStr | str | None = None
) -> Starlette:
    """The admin API on ``db`` and ``bus`` (both owned by the caller); ``api_key`` alone: admin key only."""
    settings = settings or _key_settings(api_key)

    def operations(operator: str | None = None) -> DeadLetterOperations:
        return DeadLetterOperations(db, bus, operator=operator or DEFAULT_OPERATOR)

    async def list_letters(request: Request) -> Response:
        query = dict(request.query_params)
        unknown = sorted(set(query) - {*_FILTERS, "limit"})
        if unknown:
            raise Invalid(f"{unknown[0]}: not a parameter of this operation")
        limit = _selection({"limit": query.pop("limit", 100)}).limit
        letters = await operations().select(_selection(query))
        shown = letters[:limit]
        return JSONResponse(
            {"total": len(letters), "messages": [x.summary() for x in shown], "summary": grouped(letters)}
        )

    async def show_letter(request: Request) -> Response:
        found = await operations().show(request.path_params["id"])
        if found is None:
            return _error(404, f"no dead-lettered message with id {request.path_params['id']!r}")
        return JSONResponse(found)

    async def act(request: Request, verb: str, run: Act) -> Response:
        body = await _body(request)
        scope_key = "all" if verb == "replay" else "older_than"
        allowed = {*_FILTERS, "ids", "limit", "dry_run", "operator", scope_key, "older_than"}
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise Invalid(f"{unknown[0]}: not a field of this operation")
        for flag in ("dry_run", "all"):
            if flag in body and not isinstance(body[flag], bool):
                raise Invalid(f"{flag}: must be true or false")
        if "operator" in body and not (isinstance(body["operator"], str) and 0 < len(body["operator"]) <= 64):
            raise Invalid("operator: must be a name of 1 to 64 characters")
        if not body.get("dry_run"):
            actor(request).require("operator", f"dlq {verb}")
        ids = _ids(body)
        if bool(ids) == bool(body.get(scope_key)):
            raise BadRequest(f"give ids, or {scope_key} (with filters to narrow it)")
        selection = _selection({k: body.get(k) for k in (*_FILTERS, "older_than", "limit")}, ids)
        operator = body.get("operator") or request.headers.get("x-operator")
        ops = operations(str(operator) if operator else None)
        letters = await ops.select(selection)
        found = {x.id for x in letters}
        outcomes = [Outcome(i, "skipped", "not dead-lettered") for i in selection.ids if i not in found]
        if body.get("dry_run"):
            return JSONResponse({"dry_run": True, "would": verb, "messages": await ops.preview(letters)})
        for letter in letters:
            outcomes.append(await run(ops, letter))
        done = "replayed" if verb == "replay" else "purged"
        counts = {s: sum(1 for o in outcomes if o.status == s) for s in (done, "skipped", "failed")}
        return JSONResponse({"summary": counts, "messages": [o.as_dict() for o in outcomes]})

    async def replay(request: Request) -> Response:
        return await act(request, "replay", lambda ops, letter: ops.replay(letter))

    async def purge(request: Request) -> Response:
        return await act(request, "purge", lambda ops, letter: ops.purge(letter))

    async def bad_request(request: Request, exc: Exception) -> Response:
        problems = getattr(exc, "problems", [])
        return JSONResponse(
            {"error": str(exc), **({"problems": problems} if problems else {})}, status_code=400
        )

    async def forbidden(request: Request, exc: Exception) -> Response:
        return _error(403, str(exc))

    async def invalid(request: Request, exc: Exception) -> Response:
        return _error(422, str(exc))

    async def document(request: Request) -> Response:
        return JSONResponse(openapi_document())

    return Starlette(
        routes=[
            Route("/openapi.json", document, methods=["GET"]),
            Route("/dlq", list_letters, methods=["GET"]),
            Route("/dlq/replay", replay, methods=["POST"]),
            Route("/dlq/purge", purge, methods=["POST"]),
            Route("/dlq/{id}", show_letter, methods=["GET"]),
            *console_routes(db, bus, settings),
            *subscription_routes(db, bus, settings),
        ],
        middleware=[Middleware(_RequireKey, settings=settings)],
        exception_handlers={
            BodyTooLarge: too_large,
            DataError: refused,
            BadRequest: bad_request,
            Invalid: invalid,
            Forbidden: forbidden,
            ProvisioningError: bad_request,
            DefinitionError: bad_request,
            EditError: bad_request,
        },
    )
