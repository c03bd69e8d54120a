"""Connection lookup for the pipeline: config_db rows → decrypted specs → built providers, cached."""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial

import aiohttp

from config_db import clients
from config_db.secrets import SecretBox, SecretKeyError
from contracts import DeadLetterReason
from providers import registry
from providers.base import ConnectionSpec, Provider
from providers.errors import PermanentError
from worker.db import Database
from worker.logging import redactor


@dataclass(slots=True)
class _Cached:
    spec: ConnectionSpec
    provider: Provider
    expires: float


class ProviderDirectory:
    """The provider for a client, built once per connection and re-read after ``ttl_s``."""

    def __init__(
        self, db: Database, http: aiohttp.ClientSession, secret_key: str | None, *, ttl_s: float = 30.0
    ) -> None:
        self._db = db
        self._http = http
        self._secret_key = secret_key
        self._ttl_s = ttl_s
        self._cache: dict[str, _Cached] = {}

    async def provider_for(self, client_id: str) -> Provider:
        cached = self._cache.get(client_id)
        now = time.monotonic()
        if cached is not None and cached.expires > now:
            return cached.provider
        spec = await self._load(client_id)
        if cached is not None and cached.spec == spec:
            cached.expires = now + self._ttl_s
            return cached.provider
        provider = registry.build(spec, self._http)
        self._cache[client_id] = _Cached(spec, provider, now + self._ttl_s)
        return provider

    async def _load(self, client_id: str) -> ConnectionSpec:
        stored = await self._db.run(partial(clients.get_connection, client_id=client_id))
        if stored is None:
            raise PermanentError(
                f"no provider connection is configured for client {client_id!r} "
                f"(add one with `cwi connections set {client_id} …`)",
                reason=DeadLetterReason.UnknownClient,
            )
        if not stored.enabled:
            raise PermanentError(
                f"the {stored.kind} connection of client {client_id!r} is disabled",
                reason=DeadLetterReason.ConnectionDisabled,
            )
        return spec_from_stored(stored, self._secret_key)


def spec_from_stored(stored: clients.StoredConnection, secret_key: str | None) -> ConnectionSpec:
    """Decrypt a stored connection; the secret values are registered with the log redactor first."""
    try:
        credentials = SecretBox(secret_key).decrypt(stored.credentials, owner=f"client {stored.client_id!r}")
    except SecretKeyError as exc:
        if not stored.credentials:
            credentials = {}
        else:
            raise PermanentError(str(exc), reason=DeadLetterReason.AuthenticationFailed) from None
    redactor.register(*credentials.values())
    return ConnectionSpec(
        client_id=stored.client_id,
        kind=stored.kind,
        base_url=stored.base_url,
        settings=dict(stored.settings),
        credentials=credentials,
    )
