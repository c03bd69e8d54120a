"""OpenID Connect log-in: the authorization-code flow with PKCE (S256), through Authlib.

Authlib (the ``oidc`` extra) fetches the provider's metadata, keeps the state, nonce and PKCE
verifier in the session, exchanges the code and validates the ID token against the provider's keys.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from worker.settings import Settings

EXTRA = "OpenID Connect log-in needs the oidc extra: pip install 'cwi[oidc]'"


class OidcUnavailable(Exception):
    pass


class Oidc:
    def __init__(self, settings: Settings) -> None:
        try:
            from authlib.integrations.starlette_client import OAuth
        except ModuleNotFoundError:
            raise OidcUnavailable(EXTRA) from None
        issuer = (settings.oidc_issuer or "").rstrip("/")
        secret = settings.oidc_client_secret
        self._oauth = OAuth()
        self._oauth.register(
            name="oidc",
            server_metadata_url=f"{issuer}/.well-known/openid-configuration",
            client_id=settings.oidc_client_id,
            client_secret=None if secret is None else secret.get_secret_value(),
            client_kwargs={
                "scope": settings.oidc_scopes,
                "code_challenge_method": "S256",
                # a public client (no secret) authenticates at the token endpoint by PKCE alone
                "token_endpoint_auth_method": "client_secret_post" if secret else "none",
            },
        )

    @property
    def _client(self) -> Any:
        return self._oauth.create_client("oidc")

    async def redirect(self, request: Request, callback_url: str) -> Response:
        response: Response = await self._client.authorize_redirect(request, callback_url)
        return response

    async def claims(self, request: Request) -> dict[str, Any]:
        """The signed-in user's claims (the ID token's, completed by userinfo when the token lacks some)."""
        token = await self._client.authorize_access_token(request)
        claims = dict(token.get("userinfo") or {})
        if not claims:
            claims = dict(await self._client.userinfo(token=token))
        return claims
