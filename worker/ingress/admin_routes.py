"""The admin API's console operations: the same services as the console's pages, as JSON.

Roles as in the console: reading needs viewer, replays/purges/edits/connection tests operator,
provisioning and provider administration admin (the services check). Bad input answers 400 with
``{"error", "problems"?}``; a missing role 403.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from config_db import history
from contracts import jsontext
from worker.buses.base import Bus
from worker.db import Database
from worker.ingress.bodies import read_body
from worker.operators import definitions as defs
from worker.operators import mapping
from worker.operators.actors import Actor
from worker.operators.definitions import Definitions
from worker.operators.dlq import DeadLetterOperations
from worker.operators.edits import EditError, edit_and_retry
from worker.operators.failures import Failures
from worker.operators.letters import Selection
from worker.operators.overview import overview
from worker.operators.provisioning import ConnectionRequest, Provisioning, ProvisioningError
from worker.operators.timeline import Timeline
from worker.settings import Settings


class BadInput(ProvisioningError):
    pass


def _actor(request: Request) -> Actor:
    found: Actor = request.state.actor
    return found


MAX_REQUEST_BYTES = 8 * 1024 * 1024
"""An admin request's body at most (a replay of ten thousand ids is under 1 MiB): 413 beyond. Read
whole before, however big, for any key (a viewer's too)."""


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = jsontext.loads(await read_body(request, MAX_REQUEST_BYTES) or b"{}")
    except ValueError:
        raise BadInput("the request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise BadInput("the request body must be a JSON object")
    return body


def _strings(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise BadInput(f"{what} must be an object of text values")
    return {str(k): v for k, v in value.items()}


def _jsonable(value: Any) -> Any:
    return json.loads(
        json.dumps(value, default=lambda v: v.isoformat() if hasattr(v, "isoformat") else str(v))
    )


def console_routes(db: Database, bus: Bus, settings: Settings) -> list[BaseRoute]:
    provisioning = Provisioning(db, settings)
    definitions = Definitions(db)

    def ops(request: Request) -> DeadLetterOperations:
        return DeadLetterOperations(db, bus, operator=_actor(request).name)

    def failures(request: Request) -> Failures:
        return Failures(ops(request))

    async def get_overview(request: Request) -> Response:
        letters = await ops(request).select(Selection())
        return JSONResponse(await overview(db, bus, letters))

    async def list_groups(request: Request) -> Response:
        groups = await failures(request).groups()
        return JSONResponse({"groups": [g.as_dict() for g in groups]})

    async def show_group(request: Request) -> Response:
        group = await failures(request).group(request.path_params["key"])
        if group is None:
            return JSONResponse({"error": "no such failure group (retried or purged?)"}, status_code=404)
        return JSONResponse(group.as_dict(with_letters=True))

    async def act_group(request: Request) -> Response:
        verb = request.path_params["verb"]
        if verb not in ("dry-run", "retry", "purge"):
            return JSONResponse(
                {"error": f"unknown action {verb!r}: dry-run, retry or purge"}, status_code=404
            )
        body = await _json(request)
        f = failures(request)
        group = await f.group(request.path_params["key"])
        if group is None:
            return JSONResponse({"error": "no such failure group (retried or purged?)"}, status_code=404)
        ids = body.get("ids")
        letters = group.letters if ids is None else [x for x in group.letters if x.id in set(map(str, ids))]
        if verb == "dry-run":
            return JSONResponse({"dry_run": True, "messages": await f.dry_run(letters)})
        _actor(request).require("operator", f"{verb} of a failure group")
        if verb == "purge" and body.get("confirm") is not True:
            raise BadInput('a purge needs "confirm": true (the bodies are journalled first)')
        outcomes = await (f.replay(letters) if verb == "retry" else f.purge(letters))
        return JSONResponse({"messages": [o.as_dict() for o in outcomes]})

    async def edit(request: Request) -> Response:
        body = await _json(request)
        envelope = body.get("envelope")
        if not isinstance(envelope, dict):
            raise BadInput('give the edited envelope as "envelope": {…}')
        letters = await ops(request).select(Selection(ids=(request.path_params["id"],)))
        if not letters:
            return JSONResponse({"error": "no such dead letter"}, status_code=404)
        done = await edit_and_retry(
            db, bus, _actor(request), letters[0], envelope, enabled=settings.console_edit_retry
        )
        return JSONResponse(dataclasses.asdict(done))

    async def search_records(request: Request) -> Response:
        client, text = request.query_params.get("client"), request.query_params.get("q")
        if not client or not text:
            raise BadInput("give client and q (CW id, external id, number or name)")
        return JSONResponse({"records": _jsonable(await Timeline(db, ops(request)).search(client, text))})

    async def record(request: Request) -> Response:
        p = request.path_params
        return JSONResponse(
            _jsonable(await Timeline(db, ops(request)).life(p["client"], p["entity"], p["cw_id"]))
        )

    async def list_clients(request: Request) -> Response:
        return JSONResponse({"clients": await provisioning.clients()})

    async def add_client(request: Request) -> Response:
        body = await _json(request)
        client_id, name = body.get("id"), body.get("name")
        if not isinstance(client_id, str) or not (name is None or isinstance(name, str)):
            raise BadInput('give "id" as a string (and "name", if any, as a string)')
        await provisioning.add_client(_actor(request), client_id, name)
        return JSONResponse(await provisioning.client(client_id), status_code=201)

    async def set_enabled(request: Request) -> Response:
        body = await _json(request)
        if not isinstance(body.get("enabled"), bool):
            raise BadInput('give "enabled": true or false')
        await provisioning.set_enabled(_actor(request), request.path_params["id"], body["enabled"])
        return JSONResponse(await provisioning.client(request.path_params["id"]))

    async def get_connection(request: Request) -> Response:
        view = await provisioning.connection(request.path_params["id"])
        if view is None:
            return JSONResponse({"error": "this client has no connection"}, status_code=404)
        return JSONResponse(view.as_dict())

    async def put_connection(request: Request) -> Response:
        body = await _json(request)
        unset = body.get("unset") or []
        if not isinstance(unset, list):
            raise BadInput("unset must be a list of setting or credential names")
        change = ConnectionRequest(
            kind=str(body.get("kind") or ""),
            base_url=body.get("base_url"),
            settings=_strings(body.get("settings"), "settings"),
            credentials=_strings(body.get("credentials"), "credentials"),
            unset=[str(x) for x in unset],
            enabled=body.get("enabled", True) is not False,
        )
        view = await provisioning.save_connection(_actor(request), request.path_params["id"], change)
        return JSONResponse(view.as_dict())

    async def test_connection(request: Request) -> Response:
        ok, text = await provisioning.test_connection(_actor(request), request.path_params["id"])
        return JSONResponse({"ok": ok, "answer": text})

    async def get_mapping(request: Request) -> Response:
        view = await provisioning.connection(request.path_params["id"])
        if view is None:
            return JSONResponse({"error": "this client has no connection"}, status_code=404)
        fields = mapping.fields(view.kind, view.settings)
        return JSONResponse({"fields": [dataclasses.asdict(f) for f in fields]})

    async def webhook(request: Request) -> Response:
        body = await _json(request)
        issued = await provisioning.issue_webhook(
            _actor(request), request.path_params["id"], rotate=bool(body.get("rotate"))
        )
        return JSONResponse(dataclasses.asdict(issued))

    async def register(request: Request) -> Response:
        ok, text = await provisioning.register_webhook(_actor(request), request.path_params["id"])
        return JSONResponse({"ok": ok, "answer": text})

    async def list_definitions(request: Request) -> Response:
        return JSONResponse({"providers": _jsonable([defs.as_dict(d) for d in await definitions.list()])})

    async def get_definition(request: Request) -> Response:
        found = await definitions.get(request.path_params["name"])
        if found is None:
            return JSONResponse({"error": "no such provider definition"}, status_code=404)
        return JSONResponse(_jsonable(defs.as_dict(found)))

    async def put_definition(request: Request) -> Response:
        body = {**await _json(request), "name": request.path_params["name"]}
        saved = await definitions.save(_actor(request), body)
        return JSONResponse(_jsonable(defs.as_dict(saved)))

    async def delete_definition(request: Request) -> Response:
        if not await definitions.delete(_actor(request), request.path_params["name"]):
            return JSONResponse({"error": "no such provider definition"}, status_code=404)
        return Response(status_code=204)

    async def conformance(request: Request) -> Response:
        body = await _json(request)
        name = request.path_params["name"]
        found = await definitions.get(name)
        if found is None:
            return JSONResponse({"error": "no such provider definition"}, status_code=404)
        url = body.get("base_url") or defs.fill(
            found.base_url_template, _strings(body.get("placeholders"), "placeholders")
        )
        report = await definitions.validate_endpoint(
            _actor(request), name, str(url), str(body.get("token") or ""), examples=body.get("examples", 0)
        )
        return JSONResponse(report)

    async def audit(request: Request) -> Response:
        client = request.query_params.get("client") or None
        rows = await db.run(lambda conn: history.operator_entries(conn, client_id=client))
        return JSONResponse({"entries": _jsonable(rows)})

    get = ["GET"]
    post = ["POST"]
    table: list[tuple[str, Callable[[Request], Awaitable[Response]], list[str]]] = [
        ("/overview", get_overview, get),
        ("/failures", list_groups, get),
        ("/failures/{key}", show_group, get),
        ("/failures/{key}/{verb:str}", act_group, post),
        ("/dlq/{id}/edit", edit, post),
        ("/records", search_records, get),
        ("/records/{client}/{entity}/{cw_id:path}", record, get),
        ("/clients", list_clients, get),
        ("/clients", add_client, post),
        ("/clients/{id}/enabled", set_enabled, post),
        ("/clients/{id}/connection", get_connection, get),
        ("/clients/{id}/connection", put_connection, ["PUT"]),
        ("/clients/{id}/connection/test", test_connection, post),
        ("/clients/{id}/mapping", get_mapping, get),
        ("/clients/{id}/webhooks", webhook, post),
        ("/clients/{id}/webhooks/register", register, post),
        ("/providers", list_definitions, get),
        ("/providers/{name}", get_definition, get),
        ("/providers/{name}", put_definition, ["PUT"]),
        ("/providers/{name}", delete_definition, ["DELETE"]),
        ("/providers/{name}/conformance", conformance, post),
        ("/audit", audit, get),
    ]
    return [Route(path, endpoint, methods=methods) for path, endpoint, methods in table]


__all__ = ["EditError", "console_routes"]
