"""Credentials encrypted at rest (Fernet: AES-128-CBC + HMAC-SHA256), with key rotation.

``CWI_SECRET_KEY`` holds one key or several, comma-separated, the newest first: everything is
encrypted with the first, and decrypted with whichever fits (cryptography's MultiFernet), so a new
key can be rolled out beside the old one, the credentials re-encrypted (``cwi secrets rotate``),
and the old key removed, without downtime. A key is either one made by ``cwi secrets generate-key``
(a Fernet key: 32 random bytes, urlsafe base64) or a passphrase, stretched with scrypt. Credentials
stored by earlier versions (a bare SHA-256 of the passphrase) still decrypt, and are re-encrypted
by the next rotation.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class SecretKeyError(Exception):
    """The secret key is missing or is not the one the credentials were encrypted with."""


_SCRYPT_SALT = b"cwi-credentials/v2"  # fixed: the passphrase must give the same key on every host


def generate_key() -> str:
    """A new random key for CWI_SECRET_KEY (stronger than any passphrase)."""
    return Fernet.generate_key().decode("ascii")


def _generated(key: str) -> bytes | None:
    """The key itself when ``key`` is a generated (Fernet) key, else None."""
    if len(key) != 44:
        return None
    try:
        raw = base64.urlsafe_b64decode(key.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None
    return key.encode("ascii") if len(raw) == 32 else None


@functools.lru_cache(maxsize=16)
def _stretched(passphrase: str) -> bytes:
    # scrypt (RFC 7914) from the standard library: n=2**14, r=8, p=1 costs ~50 ms and 16 MiB per key.
    digest = hashlib.scrypt(passphrase.encode(), salt=_SCRYPT_SALT, n=2**14, r=8, p=1, dklen=32)
    return base64.urlsafe_b64encode(digest)


def _legacy(passphrase: str) -> bytes:
    """How versions before key rotation derived a key (decryption only)."""
    return base64.urlsafe_b64encode(hashlib.sha256(b"cwi-credentials:" + passphrase.encode()).digest())


def parse_keys(secret_key: str | None) -> list[str]:
    keys = [k.strip() for k in (secret_key or "").split(",") if k.strip()]
    if not keys:
        raise SecretKeyError(
            "CWI_SECRET_KEY is not set: it is needed to encrypt and decrypt connection credentials "
            "(make one with `cwi secrets generate-key`)"
        )
    return keys


class SecretBox:
    """Encrypts a credentials mapping to one opaque string and back."""

    def __init__(self, secret_key: str | None) -> None:
        keys = parse_keys(secret_key)
        fernets: list[Fernet] = []
        for key in keys:
            generated = _generated(key)
            if generated is not None:
                fernets.append(Fernet(generated))
            else:
                fernets += [Fernet(_stretched(key)), Fernet(_legacy(key))]
        self._newest = fernets[0]
        self._all = MultiFernet(fernets)

    def encrypt(self, credentials: dict[str, str]) -> str:
        if not credentials:
            return ""
        return self._newest.encrypt(json.dumps(credentials, sort_keys=True).encode()).decode()

    def decrypt(self, token: str, *, owner: str = "connection") -> dict[str, str]:
        if not token:
            return {}
        try:
            data: dict[str, str] = json.loads(self._all.decrypt(token.encode()))
        except InvalidToken:
            raise SecretKeyError(
                f"cannot decrypt the credentials of {owner}: "
                "CWI_SECRET_KEY holds none of the keys they were stored with"
            ) from None
        return data

    def is_current(self, token: str) -> bool:
        """True when ``token`` is already encrypted with the newest key (or empty)."""
        if not token:
            return True
        try:
            self._newest.decrypt(token.encode())
        except InvalidToken:
            return False
        return True

    def rotate(self, token: str, *, owner: str = "connection") -> str:
        """The same credentials, encrypted with the newest key."""
        if not token:
            return ""
        try:
            return self._all.rotate(token.encode()).decode()
        except InvalidToken:
            raise SecretKeyError(
                f"cannot decrypt the credentials of {owner}: "
                "CWI_SECRET_KEY holds none of the keys they were stored with"
            ) from None
