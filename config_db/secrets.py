"""Credentials encrypted at rest with a key derived from ``CWI_SECRET_KEY``."""

from __future__ import annotations

import base64
import hashlib
import json

from cryptography.fernet import Fernet, InvalidToken


class SecretKeyError(Exception):
    """The secret key is missing or is not the one the credentials were encrypted with."""


class SecretBox:
    """Encrypts a credentials mapping to one opaque string and back (Fernet, AES-128 + HMAC)."""

    def __init__(self, secret_key: str | None) -> None:
        if not secret_key:
            raise SecretKeyError(
                "CWI_SECRET_KEY is not set: it is needed to encrypt and decrypt connection credentials"
            )
        digest = hashlib.sha256(b"cwi-credentials:" + secret_key.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def encrypt(self, credentials: dict[str, str]) -> str:
        if not credentials:
            return ""
        return self._fernet.encrypt(json.dumps(credentials, sort_keys=True).encode()).decode()

    def decrypt(self, token: str, *, owner: str = "connection") -> dict[str, str]:
        if not token:
            return {}
        try:
            data: dict[str, str] = json.loads(self._fernet.decrypt(token.encode()))
        except InvalidToken:
            raise SecretKeyError(
                f"cannot decrypt the credentials of {owner}: "
                "CWI_SECRET_KEY is not the key they were stored with"
            ) from None
        return data
