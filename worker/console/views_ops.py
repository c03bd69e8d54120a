"""Pages for operations: the overview, failures grouped, dead letters (edit and retry), the life
of a record, and the audit trail."""

from __future__ import annotations

import json
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from config_db import history
from worker.console import schema_form
from worker.console.app import Console, back, notice, page
from worker.operators.actors import Actor
from worker.operators.edits import EditError, edit_and_retry
from worker.operators.letters import Selection
from worker.operators.overview import overview


async def _overview_data(console: Console) -> dict[str, Any]:
    letters = await console.operations(None).select(Selection())
    return await overview(console.db, console.bus, letters)


async def overview_page(console: Console, request: Request, actor: Actor, form: FormData | None) -> Response:
    return console.render(request, "overview.html", data=await _overview_data(console))


async def overview_fragment(
    console: Console, request: Request, actor: Actor, form: FormData | None
) -> Response:
    return console.render(request, "_overview_table.html", data=await _overview_data(console))


async def failures_page(console: Console, request: Request, actor: Actor, form: FormData | None) -> Response:
    groups = await console.failures(actor).groups()
    return console.render(request, "failures.html", groups=[g.as_dict() for g in groups])


async def group_page(console: Console, request: Request, actor: Actor, form: FormData | None) -> Response:
    group = await console.failures(actor).group(request.path_params["key"])
    if group is None:
        notice(request, "that failure group is gone (retried or purged)", "warn")
        return back("/failures")
    return console.render(
        request, "group.html", group=group.as_dict(with_letters=True), plan=None, confirm=None
    )


async def group_act(console: Console, request: Request, actor: Actor, form: FormData | None) -> Response:
    assert form is not None
    failures = console.failures(actor)
    group = await failures.group(request.path_params["key"])
    if group is None:
        notice(request, "that failure group is gone (retried or purged)", "warn")
        return back("/failures")
    action = str(form.get("action") or "")
    chosen = set(map(str, form.getlist("ids")))
    letters = group.letters if action.endswith("group") else [x for x in group.letters if x.id in chosen]
    if not letters:
        notice(request, "select at least one message", "warn")
        return back(f"/failures/{group.key}")
    shown = group.as_dict(with_letters=True)
    if action.startswith("dry_run"):
        plan = await failures.dry_run(letters)
        return console.render(request, "group.html", group=shown, plan=plan, confirm=None)
    actor.require("operator", "retrying or purging")
    if action.startswith("purge") and form.get("confirm") != "yes":
        ids = [x.id for x in letters]
        return console.render(
            request, "group.html", group=shown, plan=None, confirm={"action": action, "ids": ids}
        )
    if action.startswith("retry"):
        outcomes = await failures.replay(letters)
    elif action.startswith("purge"):
        outcomes = await failures.purge(letters)
    else:
        notice(request, f"unknown action {action!r}", "error")
        return back(f"/failures/{group.key}")
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    notice(request, ", ".join(f"{n} {status}" for status, n in sorted(counts.items())))
    for outcome in outcomes:
        if outcome.status in ("failed", "skipped"):
            notice(request, f"{outcome.id}: {outcome.status}: {outcome.detail}", "warn")
    return back("/failures")


async def letter_page(console: Console, request: Request, actor: Actor, form: FormData | None) -> Response:
    found = await console.operations(actor).show(request.path_params["id"])
    if found is None:
        notice(request, "that message is no longer dead-lettered", "warn")
        return back("/failures")
    fields = schema_form.fields(found["envelope"]) if found["envelope"] else []
    return console.render(request, "letter.html", letter=found, fields=fields, problems=[])


async def letter_edit(console: Console, request: Request, actor: Actor, form: FormData | None) -> Response:
    assert form is not None
    ops = console.operations(actor)
    letters = await ops.select(Selection(ids=(request.path_params["id"],)))
    found = await ops.show(request.path_params["id"])
    if not letters or found is None or not found["envelope"]:
        notice(request, "that message is no longer dead-lettered", "warn")
        return back("/failures")
    letter = letters[0]
    assert letter.envelope is not None
    values = {k: str(v) for k, v in form.items() if isinstance(v, str)}
    edited, problems = schema_form.apply(letter.envelope, values)
    if not problems:
        try:
            done = await edit_and_retry(
                console.db, console.bus, actor, letter, edited, enabled=console.settings.console_edit_retry
            )
        except EditError as exc:
            problems = [str(exc), *exc.problems]
        else:
            changed = ", ".join(c["field"] for c in done.changes)
            notice(
                request,
                f"sent as new message {done.message_id} (envelope {done.envelope_id}); changed: {changed}",
            )
            return back("/failures")
    fields = schema_form.fields(edited)
    return console.render(request, "letter.html", 422, letter=found, fields=fields, problems=problems)


async def records_page(console: Console, request: Request, actor: Actor, form: FormData | None) -> Response:
    client = request.query_params.get("client", "")
    text = request.query_params.get("q", "")
    found = await console.timeline().search(client, text) if client and text else []
    clients = await console.provisioning.clients()
    return console.render(request, "records.html", client=client, q=text, found=found, clients=clients)


async def record_page(console: Console, request: Request, actor: Actor, form: FormData | None) -> Response:
    p = request.path_params
    life = await console.timeline().life(p["client"], p["entity"], p["cw_id"])
    return console.render(request, "record.html", life=life)


async def audit_page(console: Console, request: Request, actor: Actor, form: FormData | None) -> Response:
    client = request.query_params.get("client") or None
    rows = await console.db.run(lambda conn: history.operator_entries(conn, client_id=client, limit=300))
    for row in rows:
        try:
            row["what"] = json.loads(row["detail"] or "{}")
        except ValueError:
            row["what"] = {"text": row["detail"]}
    return console.render(request, "audit.html", rows=rows, client=client or "")


def routes(console: Console) -> list[BaseRoute]:
    return [
        Route("/", page(console, "viewer", overview_page), methods=["GET"]),
        Route("/overview/table", page(console, "viewer", overview_fragment), methods=["GET"]),
        Route("/failures", page(console, "viewer", failures_page), methods=["GET"]),
        Route("/failures/{key}", page(console, "viewer", group_page), methods=["GET"]),
        Route("/failures/{key}", page(console, "viewer", group_act), methods=["POST"]),
        Route("/letters/{id}", page(console, "viewer", letter_page), methods=["GET"]),
        Route("/letters/{id}/edit", page(console, "operator", letter_edit), methods=["POST"]),
        Route("/records", page(console, "viewer", records_page), methods=["GET"]),
        Route(
            "/records/{client}/{entity}/{cw_id:path}", page(console, "viewer", record_page), methods=["GET"]
        ),
        Route("/audit", page(console, "viewer", audit_page), methods=["GET"]),
    ]
