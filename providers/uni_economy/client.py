"""HTTP and auth for Uni Economy: private_key_jwt client credentials, a token cache, the CompanyKey header.

Uni's login host (an OIDC server) takes a client assertion: a short-lived RS256 JWT signed with the
integration's certificate key. We build and sign it with ``cryptography`` so no JWT library is needed.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from providers import secrets
from providers.base import ConnectionSpec
from providers.errors import AuthenticationFailed, TransientError
from providers.http import (
    ConnectionThrottle,
    HttpResponse,
    Token,
    TokenCache,
    fresh_until,
    raise_for_status,
    send,
    throttled_send,
    token_lifetime,
)
from providers.settings import SettingsReader

DEFAULT_TOKEN_URL = "https://login.unimicro.no/connect/token"  # noqa: S105 - a URL, not a secret
API_PREFIX = "/api/biz"
SCOPE = "AppFramework"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME_S = 120
REFRESH_MARGIN_S = 60.0


@dataclass(frozen=True, slots=True)
class SigningKey:
    key: rsa.RSAPrivateKey
    certificate: x509.Certificate | None = None


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _rsa(key: object, credential: str) -> rsa.RSAPrivateKey:
    if not isinstance(key, rsa.RSAPrivateKey):
        raise AuthenticationFailed(
            f"credential {credential} is not an RSA private key (Uni signs with RS256)"
        )
    return key


def _key_from_pem(pem: str, certificate_pem: str | None) -> SigningKey:
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise AuthenticationFailed(
            f"credential private_key_pem is not an unencrypted PEM private key: {exc}"
        ) from None
    certificate = None
    if certificate_pem:
        try:
            certificate = x509.load_pem_x509_certificate(certificate_pem.encode())
        except ValueError as exc:
            raise AuthenticationFailed(
                f"credential certificate_pem is not a PEM certificate: {exc}"
            ) from None
    return _matched(_rsa(key, "private_key_pem"), certificate, "certificate_pem")


def _key_from_pkcs12(encoded: str, password: str | None) -> SigningKey:
    try:
        bundle = base64.b64decode(encoded, validate=True)
        key, certificate, _ = pkcs12.load_key_and_certificates(
            bundle, password.encode() if password else None
        )
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise AuthenticationFailed(
            f"credential pkcs12 (base64 of a PKCS#12 file) cannot be opened with pkcs12_password: {exc}"
        ) from None
    if key is None:
        raise AuthenticationFailed("credential pkcs12 holds no private key")
    return _matched(_rsa(key, "pkcs12"), certificate, "pkcs12")


def _spki(public_key: Any) -> bytes:
    der, info = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return bytes(public_key.public_bytes(der, info))


def _matched(key: rsa.RSAPrivateKey, certificate: x509.Certificate | None, credential: str) -> SigningKey:
    # A certificate of another key would give a kid/x5t the login host cannot match to our signature.
    if certificate is not None and _spki(certificate.public_key()) != _spki(key.public_key()):
        raise AuthenticationFailed(
            f"credential {credential}: the certificate does not belong to the private key"
        )
    return SigningKey(key, certificate)


def load_signing_key(credentials: Mapping[str, str], settings: SettingsReader) -> SigningKey:
    """The integration's key from ``private_key_pem`` (+ ``certificate_pem``) or ``pkcs12``."""
    if credentials.get("private_key_pem"):
        return _key_from_pem(credentials["private_key_pem"], credentials.get("certificate_pem"))
    if credentials.get("pkcs12"):
        return _key_from_pkcs12(credentials["pkcs12"], credentials.get("pkcs12_password"))
    raise settings.missing_credential("private_key_pem", "or pkcs12: the integration's certificate key")


def client_assertion(key: SigningKey, client_id: str, audience: str, now: float) -> str:
    """The private_key_jwt assertion: RS256 over base64url(header).base64url(claims)."""
    header: dict[str, str] = {"alg": "RS256", "typ": "JWT"}
    if key.certificate is not None:
        # x5t is the certificate's SHA-1 thumbprint by definition (RFC 7515 §4.1.7), not a security choice.
        thumbprint = key.certificate.fingerprint(hashes.SHA1())  # noqa: S303
        header["kid"] = thumbprint.hex().upper()
        header["x5t"] = _b64url(thumbprint)
    issued = int(now)
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "jti": uuid.uuid4().hex,
        "iat": issued,
        "nbf": issued,
        "exp": issued + ASSERTION_LIFETIME_S,
    }
    signing_input = ".".join(
        _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    )
    signature = key.key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64url(signature)}"


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def describe_error(resp: HttpResponse) -> str | None:
    """Uni's error text: its body is undocumented, so read every shape seen in the wild defensively."""
    body = resp.json()
    if not isinstance(body, dict):
        return None
    texts: list[str] = []
    for key in ("Message", "message", "error_description", "error", "ExceptionMessage", "title"):
        if isinstance(body.get(key), str):
            texts.append(body[key])
    messages = body.get("Messages") or body.get("messages")
    for item in messages if isinstance(messages, list) else []:
        if isinstance(item, dict):
            prop = item.get("PropertyName") or item.get("propertyName")
            text = item.get("Message") or item.get("message")
            texts.append(f"{prop}: {text}" if prop else str(text))
        elif isinstance(item, str):
            texts.append(item)
    model_state = body.get("ModelState") or body.get("errors")
    for field, problems in model_state.items() if isinstance(model_state, dict) else []:
        listed = problems if isinstance(problems, list) else [problems]
        texts.append(f"{field}: {', '.join(map(str, listed))}")
    return _join(*dict.fromkeys(texts)) or None


def credential_hint(settings: SettingsReader) -> str:
    return (
        "check credentials client_id and private_key_pem (or pkcs12) and setting company_key: "
        f"{settings.credential_command('client_id')} --credential private_key_pem=…"
    )


class UniClient:
    """One connection's HTTP client: bearer token cached per instance, one refresh on 401."""

    def __init__(self, spec: ConnectionSpec, http: aiohttp.ClientSession) -> None:
        self._spec = spec
        self.settings = SettingsReader.of(spec)
        self._http = http
        self.api_url = spec.base_url.rstrip("/") + API_PREFIX
        self.token_url = spec.setting("token_url") or DEFAULT_TOKEN_URL
        self.throttle = ConnectionThrottle.from_settings(self.settings)
        self._key: SigningKey | None = None
        self.tokens = TokenCache(self._fetch_token)

    def company_key(self) -> str:
        return self.settings.required("company_key", "the Uni company's key, sent as the CompanyKey header")

    def headers(self, token: str) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {token}",
            "CompanyKey": self.company_key(),
            "Accept": "application/json",
        }

    async def _fetch_token(self) -> Token:
        client_id = self.settings.credential("client_id", "the integration's client id at Uni's login host")
        if self._key is None:
            self._key = load_signing_key(self._spec.credentials, self.settings)
        form = {
            "grant_type": "client_credentials",
            "client_id": client_id,
            "scope": SCOPE,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": secrets.learned_one(
                client_assertion(self._key, client_id, self.token_url, time.time())
            ),
        }
        resp = await send(self._http, "POST", self.token_url, data=form)
        if resp.status in (400, 401, 403):
            detail = describe_error(resp) or f"HTTP {resp.status}"
            raise AuthenticationFailed(
                f"Uni login at {self.token_url} refused client_id {client_id}: {detail}; "
                + credential_hint(self.settings)
            )
        raise_for_status(resp, f"Uni token request to {self.token_url}", describe=describe_error)
        body = resp.json()
        if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
            raise TransientError(f"Uni login at {self.token_url} answered without an access_token")
        lifetime = token_lifetime(body.get("expires_in"), 300.0)
        # Refresh early, but never so early that a short-lived token is refreshed on every call.
        return Token(body["access_token"], fresh_until(lifetime, min(REFRESH_MARGIN_S, lifetime / 5)))

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        missing_ok: bool = False,
    ) -> Any:
        """One API call under ``/api/biz``; a 404 gives None when ``missing_ok``, else ProviderRejected."""
        what = f"{method} {API_PREFIX}{path}"
        resp = await self.tokens.call(lambda token: self._send(method, path, token, params, json_body))
        if resp.status == 401:
            detail = describe_error(resp) or "HTTP 401"
            raise AuthenticationFailed(
                f"Uni Economy refused a fresh token for {what} ({detail}); " + credential_hint(self.settings)
            )
        if resp.status == 403:
            detail = describe_error(resp) or "HTTP 403"
            raise AuthenticationFailed(
                f"Uni Economy refused {what} ({detail}): the integration has no access to this company or "
                "operation — check setting company_key and the integration's roles in Uni; "
                + credential_hint(self.settings)
            )
        if resp.status == 404 and missing_ok:
            return None
        raise_for_status(resp, f"Uni Economy {what}", describe=describe_error)
        return resp.json()

    async def _send(
        self, method: str, path: str, token: str, params: Mapping[str, str] | None, json_body: Any
    ) -> HttpResponse:
        url = self.api_url + path
        headers = self.headers(token)
        return await throttled_send(
            self.throttle, self._http, method, url, headers=headers, json_body=json_body, params=params
        )

    async def find_one(self, collection: str, odata_filter: str, expand: str = "") -> dict[str, Any] | None:
        params = {"filter": odata_filter, "top": "1"}
        if expand:
            params["expand"] = expand
        found = await self.request("GET", f"/{collection}", params=params)
        if isinstance(found, list) and found and isinstance(found[0], dict):
            return found[0]
        return None
