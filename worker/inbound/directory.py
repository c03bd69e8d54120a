"""The client's connection as the inbound path needs it: the provider that reads the ERP, and the
ERP user our credentials act as (connection setting ``api_user``, for the author echo rule)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from typing import cast

import aiohttp

from config_db import clients
from contracts import DeadLetterReason
from providers import registry
from providers.base import InboundProvider
from providers.errors import NotSupported, PermanentError
from worker.connections import spec_from_stored
from worker.db import Database

API_USER_SETTING = "api_user"


@dataclass(frozen=True, slots=True)
class InboundConnection:
    kind: str
    provider: InboundProvider
    api_user: str | None


class InboundDirectory:
    """Connections for inbound changes, built once and re-read after ``ttl_s``."""

    def __init__(
        self, db: Database, http: aiohttp.ClientSession, secret_key: str | None, *, ttl_s: float = 30.0
    ) -> None:
        self._db = db
        self._http = http
        self._secret_key = secret_key
        self._ttl_s = ttl_s
        self._cache: dict[str, tuple[InboundConnection, float]] = {}

    async def inbound_for(self, client_id: str) -> InboundConnection:
        cached = self._cache.get(client_id)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        stored = await self._db.run(partial(clients.get_connection, client_id=client_id))
        if stored is None:
            raise PermanentError(
                f"no provider connection is configured for client {client_id!r}",
                reason=DeadLetterReason.UnknownClient,
            )
        if not stored.enabled:
            raise PermanentError(
                f"the {stored.kind} connection of client {client_id!r} is disabled",
                reason=DeadLetterReason.ConnectionDisabled,
            )
        spec = spec_from_stored(stored, self._secret_key)
        provider = registry.build(spec, self._http)
        if not (hasattr(provider, "fetch") and hasattr(provider, "to_cw")):
            raise NotSupported(f"the {spec.kind} provider does not read changes from the ERP yet")
        connection = InboundConnection(
            spec.kind, cast(InboundProvider, provider), spec.setting(API_USER_SETTING)
        )
        self._cache[client_id] = (connection, time.monotonic() + self._ttl_s)
        return connection
