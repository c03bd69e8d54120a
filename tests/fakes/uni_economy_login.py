"""The fake Uni Economy's login host: the private_key_jwt token endpoint (``/connect/token``), the
clients registered with it, and the bearer check of every ``/api/biz`` request
(``tests/fakes/uni_economy.py`` is the fake; this is its mixin)."""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.fakes.uni_economy_wire import ASSERTION_TYPE, error


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Client:
    public_key: rsa.RSAPublicKey
    x5t: str | None


class UniLogin:
    """Client registration, tokens and the checks of a client assertion; the fake (a dataclass)
    holds the state named here."""

    company_key: str
    token_lifetime_s: int
    expires_in_answer: object  # what the token answer says, when not None (not the lifetime)
    base_url: str
    token_requests: int
    assertion_headers: list[dict[str, Any]]
    _clients: dict[str, Client]
    _tokens: dict[str, tuple[str, float]]
    _jtis: set[str]

    # --- test controls ------------------------------------------------------------------------
    def register_client(
        self, client_id: str, public_key: rsa.RSAPublicKey, cert: x509.Certificate | None = None
    ) -> None:
        x5t = None
        if cert is not None:
            x5t = base64.urlsafe_b64encode(cert.fingerprint(hashes.SHA1())).rstrip(b"=").decode()  # noqa: S303
        self._clients[client_id] = Client(public_key, x5t)

    def revoke(self, client_id: str) -> None:
        self._clients.pop(client_id, None)
        self._tokens = {t: v for t, v in self._tokens.items() if v[0] != client_id}

    def expire_tokens(self) -> None:
        self._tokens = {t: (c, 0.0) for t, (c, _) in self._tokens.items()}

    @property
    def token_url(self) -> str:
        return self.base_url + "/connect/token"

    # --- login host ---------------------------------------------------------------------------
    async def _token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        form = await request.post()
        problem = self._assertion_problem({k: str(v) for k, v in form.items()})
        if problem is not None:
            return web.json_response({"error": "invalid_client", "error_description": problem}, status=400)
        token = uuid.uuid4().hex
        self._tokens[token] = (str(form["client_id"]), time.time() + self.token_lifetime_s)
        body = {
            "access_token": token,
            "expires_in": self.token_lifetime_s if self.expires_in_answer is None else self.expires_in_answer,
            "token_type": "Bearer",
            "scope": "AppFramework",
        }
        return web.json_response(body)

    def _assertion_problem(self, form: dict[str, str]) -> str | None:
        if form.get("grant_type") != "client_credentials" or form.get("scope") != "AppFramework":
            return "grant_type must be client_credentials and scope AppFramework"
        client = self._clients.get(form.get("client_id", ""))
        if client is None or form.get("client_assertion_type") != ASSERTION_TYPE:
            return "unknown client or missing client assertion"
        try:
            head, claims_part, sig = form["client_assertion"].split(".")
            header, claims = json.loads(_b64url_decode(head)), json.loads(_b64url_decode(claims_part))
            client.public_key.verify(
                _b64url_decode(sig), f"{head}.{claims_part}".encode(), padding.PKCS1v15(), hashes.SHA256()
            )
        except (KeyError, ValueError, InvalidSignature):
            return "client assertion is not a JWT signed with the registered key"
        self.assertion_headers.append(header)
        return self._claims_problem(header, claims, form["client_id"], client)

    def _claims_problem(
        self, header: dict[str, Any], claims: dict[str, Any], client_id: str, client: Client
    ) -> str | None:
        now = time.time()
        if header.get("alg") != "RS256" or (client.x5t and header.get("x5t") != client.x5t):
            return "assertion header must be RS256 with the registered certificate's x5t"
        if (
            claims.get("iss") != client_id
            or claims.get("sub") != client_id
            or claims.get("aud") != self.token_url
        ):
            return "iss and sub must be the client id and aud the token endpoint"
        if (
            not (claims.get("nbf", 0) - 5 <= now < claims.get("exp", 0))
            or claims["exp"] - claims.get("iat", 0) > 300
        ):
            return "assertion expired, not yet valid or valid for more than 5 minutes"
        if claims.get("jti") in self._jtis or not claims.get("jti"):
            return "assertion jti missing or replayed"
        self._jtis.add(claims["jti"])
        return None

    # --- the bearer check of /api/biz ---------------------------------------------------------
    def _denied(self, request: web.Request) -> web.Response | None:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        holder = self._tokens.get(token)
        if holder is None or holder[1] <= time.time():
            return error(401, "Authorization has been denied for this request.")
        if request.headers.get("CompanyKey") != self.company_key:
            return error(403, "Unknown CompanyKey")
        return None
