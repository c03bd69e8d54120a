"""The admin API: the dead-letter operations of ``cwi dlq`` as JSON over HTTP, for a web console.

Mounted by the ingress under ``/admin``. Every request needs the operator key (``CWI_ADMIN_API_KEY``)
as ``Authorization: Bearer <key>`` or ``X-Admin-Key: <key>``; without a configured key every
request is refused. The key is compared in constant time and never logged.

    GET  /dlq?client=&reason=&type=&since=&limit=      list and summary
    GET  /dlq/{id}                                     one dead letter with its history
    POST /dlq/replay  {"ids": [...] | "all": true, filters, "dry_run", "operator"}
    POST /dlq/purge   {"ids": [...] | "older_than": "7d", filters, "dry_run", "operator"}
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from worker.buses.base import DeadLetterQueue
from worker.db import Database
from worker.logging import get_logger
from worker.operators.dlq import DeadLetterOperations, Outcome
from worker.operators.letters import Letter, Selection, SelectionError, grouped, parse_duration, parse_since

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
    def __init__(self, app: Any, key: str | None) -> None:
        super().__init__(app)
        self._key = key

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        if not self._key:
            return _error(
                503, "the admin API is disabled: no operator key is configured (set CWI_ADMIN_API_KEY)"
            )
        presented = _presented_key(request)
        if presented is None or not hmac.compare_digest(presented.encode(), self._key.encode()):
            log.warning("admin request refused", path=request.url.path, key_given=presented is not None)
            headers = {"WWW-Authenticate": 'Bearer realm="cwi-admin"'}
            return _error(401, "a valid operator key is required (Authorization: Bearer <key>)", headers)
        return await call_next(request)


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _selection(values: Mapping[str, Any], ids: list[str] | None = None) -> Selection:
    try:
        since, older, limit = values.get("since"), values.get("older_than"), values.get("limit")
        return Selection(
            ids=tuple(ids or ()),
            client=values.get("client"),
            reason=values.get("reason"),
            type=values.get("type"),
            since=None if since is None else parse_since(str(since)),
            older_than=None if older is None else parse_duration(str(older)),
            limit=None if limit is None else int(limit),
        )
    except (SelectionError, ValueError) as exc:
        raise BadRequest(str(exc)) from None


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        raise BadRequest("the request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    return body


def _ids(body: Mapping[str, Any]) -> list[str] | None:
    ids = body.get("ids")
    if ids is None:
        return None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise BadRequest("ids must be a list of transport message ids")
    return ids


Act = Callable[[DeadLetterOperations, Letter], Awaitable[Outcome]]


def admin_app(db: Database, bus: DeadLetterQueue, *, api_key: SecretStr | str | None) -> Starlette:
    """The admin API on ``db`` and ``bus`` (both owned by the caller)."""
    key = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key

    def operations(operator: str | None = None) -> DeadLetterOperations:
        return DeadLetterOperations(db, bus, operator=operator or DEFAULT_OPERATOR)

    async def list_letters(request: Request) -> Response:
        query = dict(request.query_params)
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
        ids = _ids(body)
        scope_key = "all" if verb == "replay" else "older_than"
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
        return _error(400, str(exc))

    return Starlette(
        routes=[
            Route("/dlq", list_letters, methods=["GET"]),
            Route("/dlq/replay", replay, methods=["POST"]),
            Route("/dlq/purge", purge, methods=["POST"]),
            Route("/dlq/{id}", show_letter, methods=["GET"]),
        ],
        middleware=[Middleware(_RequireKey, key=key)],
        exception_handlers={BadRequest: bad_request},
    )
