"""A small OpenID Connect provider for the console's tests: authorization code with PKCE only.

Discovery, an authorize page where the test picks a user, a token endpoint that checks the PKCE
verifier (S256) and signs an ID token (RS256, joserfc), JWKS and userinfo. Users carry a
``roles`` claim. Only what the tests need; never for real use.
"""

from __future__ import annotations

import base64
import hashlib
import html
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import uvicorn
from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from worker.sockets import base_url, listen

CLIENT_ID = "cwi-console"
USERS = {
    "alice": {"preferred_username": "alice", "email": "alice@example.com", "roles": ["admin"]},
    "otto": {"preferred_username": "otto", "email": "otto@example.com", "roles": ["operator"]},
    "vera": {"preferred_username": "vera", "email": "vera@example.com", "roles": ["viewer"]},
    "nina": {"preferred_username": "nina", "email": "nina@example.com", "roles": []},
}


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


@dataclass
class Provider:
    issuer: str = ""
    key: Any = field(default_factory=lambda: RSAKey.generate_key(2048))
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    pkce_checked: int = 0
    refused: list[str] = field(default_factory=list)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self.discovery),
                Route("/authorize", self.authorize, methods=["GET"]),
                Route("/authorize", self.approve, methods=["POST"]),
                Route("/token", self.token, methods=["POST"]),
                Route("/jwks", self.jwks),
                Route("/userinfo", self.userinfo),
            ]
        )

    async def discovery(self, request: Request) -> Response:
        i = self.issuer
        return JSONResponse(
            {
                "issuer": i,
                "authorization_endpoint": f"{i}/authorize",
                "token_endpoint": f"{i}/token",
                "jwks_uri": f"{i}/jwks",
                "userinfo_endpoint": f"{i}/userinfo",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["none"],
                "scopes_supported": ["openid", "profile", "email"],
            }
        )

    async def authorize(self, request: Request) -> Response:
        q = request.query_params
        problem = None
        if q.get("client_id") != CLIENT_ID or q.get("response_type") != "code":
            problem = "unknown client or response type"
        elif q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            problem = "PKCE (S256) is required"
        if problem:
            self.refused.append(problem)
            return HTMLResponse(f"<p id='error'>{problem}</p>", status_code=400)
        hidden = "".join(
            f'<input type="hidden" name="{k}" value="{html.escape(v)}">'
            for k, v in q.items()
            if k in ("redirect_uri", "state", "nonce", "code_challenge")
        )
        buttons = "".join(f'<button name="user" value="{u}">{u}</button>' for u in USERS)
        return HTMLResponse(
            f"<!doctype html><title>Test IdP</title><form method=post>{hidden}{buttons}</form>"
        )

    async def approve(self, request: Request) -> Response:
        form = await request.form()
        code = secrets.token_urlsafe(16)
        self.codes[code] = {
            k: str(form.get(k) or "") for k in ("redirect_uri", "nonce", "code_challenge", "user")
        }
        query = urlencode({"code": code, "state": str(form.get("state") or "")})
        return RedirectResponse(f"{form.get('redirect_uri')}?{query}", status_code=302)

    async def token(self, request: Request) -> Response:
        form = await request.form()
        grant = self.codes.pop(str(form.get("code") or ""), None)
        if grant is None or form.get("redirect_uri") != grant["redirect_uri"]:
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        if s256(str(form.get("code_verifier") or "")) != grant["code_challenge"]:
            self.refused.append("code_verifier does not match the challenge")
            return JSONResponse({"error": "invalid_grant", "error_description": "PKCE"}, status_code=400)
        self.pkce_checked += 1
        user = grant["user"]
        now = int(time.time())
        claims = {
            "iss": self.issuer, "sub": user, "aud": CLIENT_ID, "iat": now, "exp": now + 300,
            "nonce": grant["nonce"], **USERS[user],
        }  # fmt: skip
        header = {"alg": "RS256", "kid": self.key.thumbprint()}
        id_token = jwt.encode(header, claims, self.key)
        access = secrets.token_urlsafe(16)
        self.tokens[access] = user
        return JSONResponse(
            {"access_token": access, "token_type": "Bearer", "expires_in": 300, "id_token": id_token}
        )

    async def jwks(self, request: Request) -> Response:
        public = self.key.as_dict(private=False)
        return JSONResponse(
            {"keys": [{**public, "kid": self.key.thumbprint(), "use": "sig", "alg": "RS256"}]}
        )

    async def userinfo(self, request: Request) -> Response:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        user = self.tokens.get(token)
        if user is None:
            return JSONResponse({"error": "invalid_token"}, status_code=401)
        return JSONResponse({"sub": user, **USERS[user]})


@contextmanager
def oidc_provider() -> Iterator[Provider]:
    """The provider on 127.0.0.1 in a thread of its own, until the block ends."""
    provider = Provider()
    sock = listen("127.0.0.1", 0)
    provider.issuer = base_url(sock)
    server = uvicorn.Server(uvicorn.Config(provider.app(), log_config=None, access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield provider
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
