"""The connection directory: one client's ERP connection, as both directions use it.

config_db rows → decrypted specs → one provider instance per connection, cached and re-read after
``ttl_s``. Outbound pushes and inbound reads share that instance, so its rate cap, its throttle
window after a 429 and its token cache hold across both directions. The "is there a connection,
and is it enabled" rule lives here once.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from functools import partial
from typing import cast

import aiohttp

from config_db import clients
from config_db.secrets import SecretBox, SecretKeyError
from contracts import DeadLetterReason
from providers import registry
from providers.base import ConnectionSpec, InboundProvider, Provider
from providers.errors import NotSupported, PermanentError, ProviderError
from providers.versions import VersionKind
from worker.db import Database
from worker.logging import get_logger, redactor

log = get_logger()

API_USER_SETTING = "api_user"
"""Optional override of the API identity the provider discovers (the author of our own writes)."""


@dataclass(eq=False)
class ErpConnection:
    """A client's connection: its provider (one instance for both directions) and our identity in it."""

    spec: ConnectionSpec
    provider: Provider
    _identity: str | None = field(default=None, repr=False)
    _identity_known: bool = field(default=False, repr=False)
    _identity_lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    @property
    def client_id(self) -> str:
        return self.spec.client_id

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def version_kind(self) -> VersionKind:
        found = registry.BY_NAME.get(self.kind)
        return found.version_kind if found is not None else "opaque"

    def inbound(self) -> InboundProvider:
        """The provider as the inbound path reads with it; NotSupported when it cannot."""
        if not (hasattr(self.provider, "fetch") and hasattr(self.provider, "to_cw")):
            raise NotSupported(f"the {self.kind} provider does not read changes from the ERP yet")
        return cast(InboundProvider, self.provider)

    async def identity(self) -> str | None:
        """Who our credentials act as in the ERP, as its webhooks name authors: the connection's
        ``api_user`` setting when set, else what the provider discovers (asked once; a failure is
        retried on the next change, and the echo rules that need no author still apply)."""
        override = self.spec.setting(API_USER_SETTING)
        if override:
            return override
        if self._identity_known:
            return self._identity
        async with self._identity_lock:
            if not self._identity_known:
                discover = getattr(self.provider, "identity", None)
                if discover is None:
                    self._identity_known = True
                else:
                    try:
                        self._identity = await discover()
                        self._identity_known = True
                    except ProviderError as exc:
                        log.warning(
                            "could not discover the API identity", client_id=self.client_id, error=str(exc)
                        )
        return self._identity


@dataclass(slots=True)
class _Cached:
    connection: ErpConnection
    expires: float


class ConnectionDirectory:
    """The connection for a client, built once per connection spec and re-read after ``ttl_s``."""

    def __init__(
        self, db: Database, http: aiohttp.ClientSession, secret_key: str | None, *, ttl_s: float = 30.0
    ) -> None:
        self._db = db
        self._http = http
        self._secret_key = secret_key
        self._ttl_s = ttl_s
        self._cache: dict[str, _Cached] = {}

    async def connection_for(self, client_id: str) -> ErpConnection:
        cached = self._cache.get(client_id)
        now = time.monotonic()
        if cached is not None and cached.expires > now:
            return cached.connection
        spec = await self._load(client_id)
        if cached is not None and cached.connection.spec == spec:
            cached.expires = now + self._ttl_s
            return cached.connection
        connection = ErpConnection(spec, registry.build(spec, self._http))
        self._cache[client_id] = _Cached(connection, now + self._ttl_s)
        return connection

    async def provider_for(self, client_id: str) -> Provider:
        return (await self.connection_for(client_id)).provider

    async def _load(self, client_id: str) -> ConnectionSpec:
        stored = await self._db.run(partial(clients.get_connection, client_id=client_id))
        return spec_from_stored(require_enabled(stored, client_id), self._secret_key)


def require_enabled(stored: clients.StoredConnection | None, client_id: str) -> clients.StoredConnection:
    """The stored connection, or the typed error that dead-letters the message."""
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
    return stored


class CredentialsUnreadable(SecretKeyError):
    """This worker's CWI_SECRET_KEY cannot decrypt a connection's credentials: a configuration
    problem of the worker, not of the message (which waits, and is never dead-lettered for it)."""


def unreadable_credentials(connections: list[clients.StoredConnection], secret_key: str | None) -> list[str]:
    """One line per enabled connection whose credentials this key cannot decrypt (checked at start)."""
    problems = []
    for stored in connections:
        if stored.enabled and stored.credentials:
            try:
                SecretBox(secret_key).decrypt(stored.credentials, owner=f"client {stored.client_id!r}")
            except SecretKeyError as exc:
                problems.append(str(exc))
    return problems


def spec_from_stored(stored: clients.StoredConnection, secret_key: str | None) -> ConnectionSpec:
    """Decrypt a stored connection; the secret values are registered with the log redactor first."""
    if not stored.credentials:
        credentials: dict[str, str] = {}
    else:
        try:
            box = SecretBox(secret_key)
            credentials = box.decrypt(stored.credentials, owner=f"client {stored.client_id!r}")
        except SecretKeyError as exc:
            raise CredentialsUnreadable(str(exc)) from None
    redactor.register(*credentials.values())
    return ConnectionSpec(
        client_id=stored.client_id,
        kind=stored.kind,
        base_url=stored.base_url,
        settings=dict(stored.settings),
        credentials=credentials,
    )
