"""The operator console: server-rendered pages at ``/console`` on the app of ``cwi serve``.

Jinja2 templates and one vendored script (htmx, for the overview's live refresh); every page reads
with JavaScript off and every action is a plain form post (CSRF-checked), answered with a redirect
and a one-line notice, or with the page again naming what to fix.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import jinja2
from sqlalchemy.exc import DataError
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from contracts import jsontext
from worker.buses.base import Bus
from worker.console import auth
from worker.console.auth import CSRF_FIELD, CsrfError
from worker.console.headers import NoFraming
from worker.db import Database, refused_value
from worker.operators.actors import Actor, Forbidden, Role
from worker.operators.definitions import Definitions
from worker.operators.dlq import DeadLetterOperations
from worker.operators.failures import Failures
from worker.operators.provisioning import Provisioning
from worker.operators.timeline import Timeline
from worker.settings import Settings

PREFIX = "/console"


def _when(value: Any) -> str:
    if value in (None, ""):
        return "—"
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return str(value)
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(value)


def _pretty(value: Any) -> str:
    if isinstance(value, str):
        try:
            value = jsontext.loads(value)  # a dead letter's body may nest past recursion
        except ValueError:
            return str(value)
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("worker.console", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.ChainableUndefined,
    )
    env.filters["when"] = _when
    env.filters["pretty"] = _pretty
    env.filters["q"] = lambda v: quote(str(v), safe="")
    return Jinja2Templates(env=env)


@dataclass
class Console:
    db: Database
    bus: Bus
    settings: Settings
    templates: Jinja2Templates = field(default_factory=templates)

    def __post_init__(self) -> None:
        self.provisioning = Provisioning(self.db, self.settings)
        self.definitions = Definitions(self.db)
        self._oidc: Any = None

    def operations(self, actor: Actor | None) -> DeadLetterOperations:
        return DeadLetterOperations(self.db, self.bus, operator=actor.name if actor else "console")

    def failures(self, actor: Actor | None) -> Failures:
        return Failures(self.operations(actor))

    def timeline(self) -> Timeline:
        return Timeline(self.db, self.operations(None))

    def oidc(self) -> Any:
        if self._oidc is None:
            from worker.console.oidc import Oidc

            self._oidc = Oidc(self.settings)
        return self._oidc

    def render(self, request: Request, name: str, status: int = 200, **context: Any) -> Response:
        actor = auth.actor_of(request)
        notices = request.session.pop("notices", []) if "session" in request.scope else []
        base = {
            "actor": actor,
            "csrf": auth.csrf_token(request),
            "csrf_field": CSRF_FIELD,
            "notices": notices,
            "prefix": PREFIX,
            "path": request.url.path,
            "oidc": auth.oidc_configured(self.settings),
            "edit_enabled": self.settings.console_edit_retry,
        }
        return self.templates.TemplateResponse(request, name, {**base, **context}, status_code=status)


def notice(request: Request, text: str, kind: str = "ok") -> None:
    request.session.setdefault("notices", []).append({"kind": kind, "text": text})
    request.session["notices"] = request.session["notices"]  # mark the session changed


def back(path: str) -> RedirectResponse:
    return RedirectResponse(PREFIX + path, status_code=303)


Handler = Callable[[Console, Request, Actor, FormData | None], Awaitable[Response]]


def page(console: Console, role: Role, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Log-in, role and (for posts) CSRF checks around a console handler."""

    async def endpoint(request: Request) -> Response:
        actor = auth.actor_of(request)
        if actor is None:
            if request.method != "GET":
                return console.render(request, "error.html", 401, message="your session has ended: log in")
            target = quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""), safe="")
            return RedirectResponse(f"{PREFIX}/login?next={target}", status_code=303)
        form = None
        if request.method == "POST":
            form = await request.form()
            try:
                auth.check_csrf(request, form)
            except CsrfError as exc:
                return console.render(request, "error.html", 403, message=str(exc))
        try:
            actor.require(role, "this page")
            return await handler(console, request, actor, form)
        except Forbidden as exc:
            return console.render(request, "error.html", 403, message=str(exc))
        except DataError as exc:  # a NUL character in a search on PostgreSQL
            return console.render(request, "error.html", 400, message=refused_value(exc))

    return endpoint


def console_app(db: Database, bus: Bus, settings: Settings) -> Starlette:
    from worker.console import views_admin, views_auth, views_ops, views_subscriptions

    console = Console(db, bus, settings)
    routes: list[BaseRoute] = [
        Mount("/static", app=StaticFiles(packages=[("worker.console", "static")]), name="static"),
        *views_auth.routes(console),
        *views_ops.routes(console),
        *views_admin.routes(console),
        *views_subscriptions.routes(console),
    ]
    secret = auth.session_secret(settings)
    if secret is None:

        async def disabled(request: Request) -> Response:
            text = "The console is disabled: no key is configured (set CWI_ADMIN_API_KEY)."
            return HTMLResponse(f"<!doctype html><title>cwi console</title><p>{text}</p>", status_code=503)

        return Starlette(routes=[Route("/", disabled), Route("/{path:path}", disabled)])
    https = settings.public_url.startswith("https://")
    middleware = [
        Middleware(
            SessionMiddleware,
            secret_key=secret,
            session_cookie="cwi_console",
            max_age=auth.SESSION_MAX_AGE_S,
            same_site="lax",
            https_only=https,
        ),
        Middleware(NoFraming),
    ]
    return Starlette(routes=routes, middleware=middleware)
