"""Who is using the console: log-in with an API key or OpenID Connect, the session, CSRF.

The session is a signed cookie (Starlette's SessionMiddleware) holding the user's name, role and
CSRF token; it never holds a key, a token or a secret. Keys: ``CWI_ADMIN_API_KEY`` (admin),
``CWI_OPERATOR_API_KEY`` (operator), ``CWI_VIEWER_API_KEY`` (viewer), compared in constant time.
OpenID Connect (``CWI_OIDC_ISSUER`` and ``CWI_OIDC_CLIENT_ID``): the authorization-code flow with
PKCE (S256) through Authlib; the role comes from the ID token's (or userinfo's) ``roles`` claim
(``CWI_OIDC_ROLES_CLAIM``), mapped by ``CWI_OIDC_ROLE_MAP``; a user without a known role is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from typing import Any

from pydantic import SecretStr
from starlette.requests import Request

from worker.operators.actors import ROLES, Actor, Role
from worker.settings import Settings

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SESSION_MAX_AGE_S = 8 * 3600


class CsrfError(Exception):
    pass


def _value(secret: SecretStr | None) -> str | None:
    return None if secret is None else secret.get_secret_value() or None


def role_keys(settings: Settings) -> list[tuple[str, Role]]:
    """The configured keys and the role each one grants, strongest first."""
    pairs: list[tuple[SecretStr | None, Role]] = [
        (settings.admin_api_key, "admin"),
        (settings.operator_api_key, "operator"),
        (settings.viewer_api_key, "viewer"),
    ]
    return [(key, role) for secret, role in pairs if (key := _value(secret))]


def role_of_key(settings: Settings, presented: str | None) -> Role | None:
    if not presented:
        return None
    found: Role | None = None
    for key, role in role_keys(settings):
        # every key compared, so the time does not say which one matched
        if hmac.compare_digest(presented.encode(), key.encode()) and found is None:
            found = role
    return found


def key_label(presented: str) -> str:
    """How a key-holder is named in the audit trail: never the key, only a short digest of it."""
    return "key-" + hashlib.sha256(presented.encode()).hexdigest()[:8]


def session_secret(settings: Settings) -> str | None:
    """What signs the session cookie; None when the console cannot have sessions (no key at all)."""
    explicit = _value(settings.console_session_key)
    if explicit:
        return explicit
    keys = [key for key, _ in role_keys(settings)]
    if not keys and not oidc_configured(settings):
        return None
    material = "\x00".join([*keys, settings.secret or "", settings.oidc_client_id or ""])
    return hashlib.sha256(b"cwi-console-session:" + material.encode()).hexdigest()


def oidc_configured(settings: Settings) -> bool:
    return bool(settings.oidc_issuer and settings.oidc_client_id)


def role_from_claims(settings: Settings, claims: Mapping[str, Any]) -> Role | None:
    """The strongest role the user's claim grants (a list or a space/comma-separated text)."""
    raw = claims.get(settings.oidc_roles_claim)
    values = raw if isinstance(raw, list) else str(raw or "").replace(",", " ").split()
    granted = set()
    for value in map(str, values):
        mapped = settings.oidc_role_map.get(value, value)
        if mapped in ROLES:
            granted.add(mapped)
    for role in reversed(ROLES):
        if role in granted:
            return role
    return None


def sign_in(request: Request, name: str, role: Role, via: str) -> None:
    request.session.clear()
    request.session.update({"user": name, "role": role, "via": via, "csrf": secrets.token_urlsafe(24)})


def actor_of(request: Request) -> Actor | None:
    session = request.session
    role = session.get("role")
    if not session.get("user") or role not in ROLES:
        return None
    return Actor(str(session["user"]), role, via="console")


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(24)
        request.session["csrf"] = token
    return str(token)


def check_csrf(request: Request, form: Mapping[str, Any]) -> None:
    expected = request.session.get("csrf")
    given = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
    if not expected or not isinstance(given, str) or not hmac.compare_digest(given, str(expected)):
        raise CsrfError("the form's CSRF token is missing or does not match this session: reload the page")
