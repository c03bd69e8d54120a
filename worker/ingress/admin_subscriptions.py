"""The admin API's webhook subscriptions (``worker.operators.subscriptions`` does the work).

    GET    /subscriptions?client=                      subscriptions with their delivery counts
    POST   /subscriptions  {"client_id", "url", "events", "fields"?, "description"?}   201, the secret once
    GET    /subscriptions/{id}
    DELETE /subscriptions/{id}                         its waiting deliveries dropped; the log stays
    POST   /subscriptions/{id}/rotate-secret {"grace_s"?}   the new secret once
    POST   /subscriptions/{id}/pause | /resume
    GET    /subscriptions/{id}/deliveries?status=&limit=   the delivery log, newest first

Roles: reading viewer, pause and resume operator, the rest admin. Bad input 400, unknown id 404.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from worker.buses.base import Bus
from worker.db import Database
from worker.ingress.admin_routes import _json as json_body
from worker.operators.actors import Actor
from worker.operators.subscriptions import NoSuchSubscription, SubscriptionError, Subscriptions
from worker.settings import Settings

Endpoint = Callable[[Request], Awaitable[Response]]


def _actor(request: Request) -> Actor:
    found: Actor = request.state.actor
    return found


def _texts(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SubscriptionError(f"{what} must be a list of texts")
    return value


def _answering(run: Endpoint) -> Endpoint:
    """400 for bad input, 404 for an unknown subscription (403 is the admin app's)."""

    async def endpoint(request: Request) -> Response:
        try:
            return await run(request)
        except NoSuchSubscription as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        except SubscriptionError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)

    return endpoint


def subscription_routes(db: Database, bus: Bus, settings: Settings) -> list[BaseRoute]:
    service = Subscriptions(db, bus, settings)

    async def listed(request: Request) -> Response:
        return JSONResponse({"subscriptions": await service.listed(request.query_params.get("client"))})

    async def add(request: Request) -> Response:
        body = await json_body(request)
        issued = await service.add(
            _actor(request),
            str(body.get("client_id") or ""),
            str(body.get("url") or ""),
            _texts(body.get("events"), "events"),
            _texts(body.get("fields"), "fields"),
            str(body.get("description") or ""),
        )
        return JSONResponse(dataclasses.asdict(issued), status_code=201)

    async def one(request: Request) -> Response:
        return JSONResponse(await service.get(request.path_params["id"]))

    async def remove(request: Request) -> Response:
        return JSONResponse({"dropped": await service.remove(_actor(request), request.path_params["id"])})

    async def rotate(request: Request) -> Response:
        grace = (await json_body(request)).get("grace_s")
        if grace is not None and (not isinstance(grace, int | float) or isinstance(grace, bool)):
            raise SubscriptionError("grace_s must be a number of seconds")
        issued = await service.rotate_secret(_actor(request), request.path_params["id"], grace)
        return JSONResponse(dataclasses.asdict(issued))

    async def pause(request: Request) -> Response:
        return JSONResponse(await service.pause(_actor(request), request.path_params["id"]))

    async def resume(request: Request) -> Response:
        return JSONResponse(await service.resume(_actor(request), request.path_params["id"]))

    async def log(request: Request) -> Response:
        q = request.query_params
        try:
            limit = int(q.get("limit") or 50)
        except ValueError:
            raise SubscriptionError("limit must be a whole number") from None
        found = await service.log(request.path_params["id"], status=q.get("status") or None, limit=limit)
        return JSONResponse({"deliveries": found})

    table: list[tuple[str, Endpoint, list[str]]] = [
        ("/subscriptions", listed, ["GET"]),
        ("/subscriptions", add, ["POST"]),
        ("/subscriptions/{id}", one, ["GET"]),
        ("/subscriptions/{id}", remove, ["DELETE"]),
        ("/subscriptions/{id}/rotate-secret", rotate, ["POST"]),
        ("/subscriptions/{id}/pause", pause, ["POST"]),
        ("/subscriptions/{id}/resume", resume, ["POST"]),
        ("/subscriptions/{id}/deliveries", log, ["GET"]),
    ]
    return [Route(path, _answering(endpoint), methods=methods) for path, endpoint, methods in table]
