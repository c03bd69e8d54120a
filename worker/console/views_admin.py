"""Pages for administration: clients and their connections (provisioning), provider definitions."""

from __future__ import annotations

from functools import partial
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from config_db import clients as repo
from providers import registry
from worker.console.app import Console, back, notice, page
from worker.operators import definitions as defs
from worker.operators import mapping
from worker.operators.actors import Actor
from worker.operators.definitions import DefinitionError
from worker.operators.provisioning import DEFINITION_SETTING, ConnectionRequest, ProvisioningError

CONSOLE_MAX_EXAMPLES = 50
"""Generated cases per operation a console run may ask for: the run holds the page's request, and 50
already take minutes (the CLI and the admin API take up to the kit's 1,000)."""


def _pairs(form: FormData, prefix: str) -> dict[str, str]:
    """``prefix.name`` fields, and the ``prefix_new_name``/``prefix_new_value`` pair to add one."""
    found = {k.removeprefix(prefix + "."): str(v) for k, v in form.items() if k.startswith(prefix + ".")}
    new_name, new_value = (
        str(form.get(f"{prefix}_new_name") or "").strip(),
        str(form.get(f"{prefix}_new_value") or ""),
    )
    if new_name:
        found[new_name] = new_value
    return found


async def clients_page(console: Console, request: Request, actor: Actor, form: FormData | None) -> Response:
    return console.render(request, "clients.html", clients=await console.provisioning.clients())


async def client_add(console: Console, request: Request, actor: Actor, form: FormData | None) -> Response:
    assert form is not None
    client_id = str(form.get("client_id") or "").strip()
    try:
        await console.provisioning.add_client(actor, client_id, str(form.get("name") or "").strip() or None)
    except ProvisioningError as exc:
        notice(request, str(exc), "error")
        return back("/clients")
    notice(request, f"client {client_id} added: now give it a connection")
    return back(f"/clients/{client_id}")


async def _client_context(console: Console, client_id: str) -> dict[str, Any] | None:
    client = await console.provisioning.client(client_id)
    if client is None:
        return None
    connection = await console.provisioning.connection(client_id)
    kind = connection.kind if connection else "generic_rest"
    settings = dict(connection.settings) if connection else {}
    return {
        "client": client,
        "connection": connection,
        "kinds": registry.KINDS,
        "definitions": [defs.as_dict(d) for d in await console.definitions.list()],
        "fields": mapping.fields(kind, settings),
        "endpoints": await console.provisioning.endpoints(client_id),
        "problems": [],
        "result": None,
        "issued": None,
        "options_note": None,
    }


async def client_page(console: Console, request: Request, actor: Actor, form: FormData | None) -> Response:
    context = await _client_context(console, request.path_params["id"])
    if context is None:
        notice(request, f"no client {request.path_params['id']!r}", "error")
        return back("/clients")
    if request.query_params.get("options") and context["connection"] is not None:
        stored = await console.db.run(partial(repo.get_connection, client_id=request.path_params["id"]))
        if stored is not None:
            context["options_note"] = await mapping.with_options(
                stored, console.settings.secret, context["fields"]
            )
    return console.render(request, "client.html", **context)


async def client_post(console: Console, request: Request, actor: Actor, form: FormData | None) -> Response:
    assert form is not None
    client_id = request.path_params["id"]
    action = str(form.get("action") or "")
    p = console.provisioning
    context = await _client_context(console, client_id)
    if context is None:
        return back("/clients")
    status = 200
    try:
        if action == "connection":
            kind = str(form.get("kind") or "")
            settings = _pairs(form, "setting")
            definition = str(form.get("definition") or "")
            if definition:
                kind, settings[DEFINITION_SETTING] = "generic_rest", definition
            request_ = ConnectionRequest(
                kind=kind,
                base_url=str(form.get("base_url") or "").strip() or None,
                settings=settings,
                credentials={k: v for k, v in _pairs(form, "credential").items() if v},
                unset=[str(x) for x in form.getlist("unset")],
                enabled=form.get("enabled") == "on",
            )
            await p.save_connection(actor, client_id, request_)
            notice(request, f"{kind} connection of {client_id} saved")
            return back(f"/clients/{client_id}")
        if action == "mapping":
            view = context["connection"]
            if view is None:
                raise ProvisioningError("add a connection first")
            values = {k: v for k, v in _pairs(form, "setting").items()}
            empty = [k for k, v in values.items() if v == "" and k in view.settings]
            request_ = ConnectionRequest(
                kind=view.kind,
                settings={k: v for k, v in values.items() if v != ""},
                unset=empty,
                enabled=view.enabled,
            )
            await p.save_connection(actor, client_id, request_)
            notice(request, f"mapping settings of {client_id} saved")
            return back(f"/clients/{client_id}")
        if action in ("disable", "enable"):
            await p.set_enabled(actor, client_id, action == "enable")
            notice(request, f"client {client_id} {action}d")
            return back(f"/clients/{client_id}")
        if action == "test":
            ok, text = await p.test_connection(actor, client_id)
            context["result"] = {"ok": ok, "title": "Test connection", "text": text}
        elif action in ("issue", "rotate"):
            issued = await p.issue_webhook(actor, client_id, rotate=action == "rotate")
            context["issued"] = issued
        elif action == "register":
            ok, text = await p.register_webhook(actor, client_id)
            context["result"] = {"ok": ok, "title": "Register webhook", "text": text}
        else:
            raise ProvisioningError(f"unknown action {action!r}")
    except ProvisioningError as exc:
        context["problems"] = [str(exc), *exc.problems]
        status = 422
    refreshed = await _client_context(console, client_id)
    assert refreshed is not None
    keep = {k: context[k] for k in ("problems", "result", "issued")}
    return console.render(request, "client.html", status, **{**refreshed, **keep})


async def providers_page(console: Console, request: Request, actor: Actor, form: FormData | None) -> Response:
    found = [defs.as_dict(d) for d in await console.definitions.list()]
    return console.render(request, "providers.html", definitions=found, problems=[], values={})


async def provider_save(console: Console, request: Request, actor: Actor, form: FormData | None) -> Response:
    assert form is not None
    raw: dict[str, Any] = {k: str(v) for k, v in form.items() if isinstance(v, str)}
    raw["entities"] = [str(x) for x in form.getlist("entities")]
    raw["actions"] = [str(x) for x in form.getlist("actions")]
    try:
        saved = await console.definitions.save(actor, raw)
    except DefinitionError as exc:
        found = [defs.as_dict(d) for d in await console.definitions.list()]
        problems = [str(exc), *exc.problems]
        return console.render(
            request, "providers.html", 422, definitions=found, problems=problems, values=raw
        )
    notice(request, f"provider {saved.name} saved: validate it with a conformance run")
    return back(f"/providers/{saved.name}")


async def provider_page(console: Console, request: Request, actor: Actor, form: FormData | None) -> Response:
    found = await console.definitions.get(request.path_params["name"])
    if found is None:
        notice(request, f"no provider definition {request.path_params['name']!r}", "error")
        return back("/providers")
    return console.render(
        request, "provider.html", d=defs.as_dict(found), problems=[], max_examples=CONSOLE_MAX_EXAMPLES
    )


async def provider_validate(
    console: Console, request: Request, actor: Actor, form: FormData | None
) -> Response:
    assert form is not None
    name = request.path_params["name"]
    found = await console.definitions.get(name)
    if found is None:
        return back("/providers")
    try:
        values = {
            p: str(form.get(f"placeholder.{p}") or "") for p in defs.placeholders(found.base_url_template)
        }
        url = defs.fill(found.base_url_template, values)
        await console.definitions.validate_endpoint(
            actor,
            name,
            url,
            str(form.get("token") or ""),
            examples=str(form.get("examples") or "0"),
            most_examples=CONSOLE_MAX_EXAMPLES,
        )
    except (DefinitionError, ValueError) as exc:
        problems = [str(exc), *getattr(exc, "problems", [])]
        return console.render(
            request,
            "provider.html",
            422,
            d=defs.as_dict(found),
            problems=problems,
            max_examples=CONSOLE_MAX_EXAMPLES,
        )
    notice(request, f"conformance run of {name} finished: see its report")
    return back(f"/providers/{name}")


def routes(console: Console) -> list[BaseRoute]:
    return [
        Route("/clients", page(console, "viewer", clients_page), methods=["GET"]),
        Route("/clients", page(console, "admin", client_add), methods=["POST"]),
        Route("/clients/{id}", page(console, "viewer", client_page), methods=["GET"]),
        Route("/clients/{id}", page(console, "operator", client_post), methods=["POST"]),
        Route("/providers", page(console, "viewer", providers_page), methods=["GET"]),
        Route("/providers", page(console, "admin", provider_save), methods=["POST"]),
        Route("/providers/{name}", page(console, "viewer", provider_page), methods=["GET"]),
        Route("/providers/{name}/validate", page(console, "admin", provider_validate), methods=["POST"]),
    ]
