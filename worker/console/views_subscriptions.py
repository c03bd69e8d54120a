"""Pages for third parties' webhook subscriptions: the list (and adding one), one subscription with
its delivery log, and its actions (pause, resume, rotate the secret, remove).

A signing secret is shown on the page that answers its creation or rotation, never stored in the
session (a signed cookie, not an encrypted one) and never shown again.
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from config_db.deliveries import STATUSES
from worker.console.app import Console, back, notice, page
from worker.operators.actors import Actor
from worker.operators.subscriptions import Issued, NoSuchSubscription, SubscriptionError, Subscriptions


def _service(console: Console) -> Subscriptions:
    return Subscriptions(console.db, console.bus, console.settings)


def _split(value: Any) -> list[str]:
    return [part.strip() for part in str(value or "").split(",") if part.strip()]


async def _list_context(console: Console, request: Request) -> dict[str, Any]:
    client = request.query_params.get("client") or None
    clients = await console.provisioning.clients()
    return {
        "subscriptions": await _service(console).listed(client),
        "clients": [c["id"] for c in clients],
        "client": client,
        "problems": [],
        "values": {},
        "issued": None,
    }


async def list_page(console: Console, request: Request, actor: Actor, form: FormData | None) -> Response:
    return console.render(request, "subscriptions.html", **await _list_context(console, request))


async def add(console: Console, request: Request, actor: Actor, form: FormData | None) -> Response:
    assert form is not None
    values = {k: str(form.get(k) or "") for k in ("client_id", "url", "events", "fields", "description")}
    context = await _list_context(console, request)
    try:
        issued = await _service(console).add(
            actor,
            values["client_id"],
            values["url"],
            _split(values["events"]),
            _split(values["fields"]),
            values["description"],
        )
    except SubscriptionError as exc:
        return console.render(
            request, "subscriptions.html", 422, **{**context, "problems": [str(exc)], "values": values}
        )
    context = await _list_context(console, request)
    return console.render(request, "subscriptions.html", 201, **{**context, "issued": issued})


async def _detail(
    console: Console, request: Request, *, issued: Issued | None = None, status: int = 200
) -> Response:
    service = _service(console)
    sub_id = request.path_params["id"]
    try:
        sub = await service.get(sub_id)
    except NoSuchSubscription as exc:
        notice(request, str(exc), "error")
        return back("/subscriptions")
    shown = request.query_params.get("status") or None
    log = await service.log(sub_id, status=shown if shown in STATUSES else None, limit=200)
    return console.render(
        request, "subscription.html", status, sub=sub, log=log, statuses=STATUSES, shown=shown, issued=issued
    )


async def detail_page(console: Console, request: Request, actor: Actor, form: FormData | None) -> Response:
    return await _detail(console, request)


async def act(console: Console, request: Request, actor: Actor, form: FormData | None) -> Response:
    """pause and resume (operator); rotate and remove (admin: the service checks)."""
    assert form is not None
    service = _service(console)
    sub_id, action = request.path_params["id"], str(form.get("action") or "")
    try:
        if action == "pause":
            await service.pause(actor, sub_id)
            notice(request, f"{sub_id} paused: its deliveries wait")
        elif action == "resume":
            resumed = await service.resume(actor, sub_id)
            notice(request, f"{sub_id} resumed: {resumed['woken']} record(s) with waiting deliveries")
        elif action == "rotate":
            return await _detail(console, request, issued=await service.rotate_secret(actor, sub_id))
        elif action == "remove":
            if form.get("confirm") != "yes":
                raise SubscriptionError("tick the box to confirm the removal")
            dropped = await service.remove(actor, sub_id)
            notice(request, f"{sub_id} removed; {dropped} waiting deliveries dropped")
            return back("/subscriptions")
        else:
            raise SubscriptionError(f"unknown action {action!r}")
    except SubscriptionError as exc:
        notice(request, str(exc), "error")
    return back(f"/subscriptions/{sub_id}")


def routes(console: Console) -> list[BaseRoute]:
    return [
        Route("/subscriptions", page(console, "viewer", list_page), methods=["GET"]),
        Route("/subscriptions", page(console, "admin", add), methods=["POST"]),
        Route("/subscriptions/{id}", page(console, "viewer", detail_page), methods=["GET"]),
        Route("/subscriptions/{id}", page(console, "operator", act), methods=["POST"]),
    ]
