"""Log-in (API key, OpenID Connect) and log-out."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from worker.console import auth
from worker.console.app import PREFIX, Console, notice
from worker.logging import get_logger
from worker.operators.actors import Actor, audit

log = get_logger()


def _next(value: Any) -> str:
    """Only a path inside the console: never an open redirect."""
    text = str(value or "")
    parts = urlsplit(text)
    if parts.scheme or parts.netloc or not text.startswith(PREFIX):
        return PREFIX + "/"
    return text


def _csrf_refused(console: Console, request: Request, form: Any) -> Response | None:
    try:
        auth.check_csrf(request, form)
    except auth.CsrfError as exc:
        return console.render(request, "error.html", 403, message=str(exc))
    return None


def routes(console: Console) -> list[BaseRoute]:
    async def login_page(request: Request) -> Response:
        return console.render(request, "login.html", next=_next(request.query_params.get("next")), error=None)

    async def login(request: Request) -> Response:
        form = await request.form()
        if (refused := _csrf_refused(console, request, form)) is not None:
            return refused
        presented = str(form.get("key") or "")
        role = auth.role_of_key(console.settings, presented)
        target = _next(form.get("next"))
        if role is None:
            log.warning("console log-in refused", key_given=bool(presented))
            error = "that key is not valid" if presented else "enter a key"
            return console.render(request, "login.html", 401, next=target, error=error)
        name = auth.key_label(presented)
        auth.sign_in(request, name, role, "key")
        await audit(console.db, Actor(name, role), "logged_in", method="key")
        return RedirectResponse(target, status_code=303)

    async def logout(request: Request) -> Response:
        form = await request.form()
        if (refused := _csrf_refused(console, request, form)) is not None:
            return refused
        request.session.clear()
        return RedirectResponse(f"{PREFIX}/login", status_code=303)

    async def oidc_start(request: Request) -> Response:
        if not auth.oidc_configured(console.settings):
            return console.render(request, "error.html", 404, message="OpenID Connect is not configured")
        request.session["next"] = _next(request.query_params.get("next"))
        callback = str(request.url_for("oidc_callback"))
        redirect: Response = await console.oidc().redirect(request, callback)
        return redirect

    async def oidc_callback(request: Request) -> Response:
        target = _next(request.session.pop("next", None))
        try:
            claims = await console.oidc().claims(request)
        except Exception as exc:  # noqa: BLE001 - any failure of the flow: say it, log in again
            log.warning("OpenID Connect log-in failed", error=f"{exc.__class__.__name__}: {exc}")
            message = f"the identity provider's answer was not accepted: {exc.__class__.__name__}: {exc}"
            return console.render(request, "login.html", 401, next=target, error=message)
        role = auth.role_from_claims(console.settings, claims)
        name = str(claims.get("preferred_username") or claims.get("email") or claims.get("sub") or "?")
        if role is None:
            claim = console.settings.oidc_roles_claim
            message = f"{name} has no console role (claim {claim!r} must name viewer, operator or admin)"
            return console.render(request, "login.html", 403, next=target, error=message)
        auth.sign_in(request, name, role, "oidc")
        await audit(console.db, Actor(name, role), "logged_in", method="oidc")
        notice(request, f"signed in as {name} ({role})")
        return RedirectResponse(target, status_code=303)

    return [
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/oidc/login", oidc_start, methods=["GET"]),
        Route("/oidc/callback", oidc_callback, methods=["GET"], name="oidc_callback"),
    ]
