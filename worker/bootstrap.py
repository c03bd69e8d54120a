"""The composition root: the only place that builds the real database, bus, HTTP client and pipeline."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp

from config_db.database import make_engine
from worker.buses.base import Bus
from worker.buses.local import LocalBus
from worker.cw.http import HttpCW
from worker.db import Database
from worker.messaging.connections import ConnectionDirectory
from worker.messaging.dispatch import Dispatcher
from worker.messaging.retry import RetryPolicy
from worker.messaging.runner import Handler, Worker
from worker.operators.values import ValueRecorder
from worker.settings import Settings


@dataclass
class App:
    settings: Settings
    db: Database
    bus: Bus
    http: aiohttp.ClientSession | None = None
    _connections: ConnectionDirectory | None = field(default=None, repr=False)

    def worker(self, *, concurrency: int | None = None) -> Worker:
        assert self.http is not None, "open the app with http=True to run the worker"
        connections = self.connections()
        policy = RetryPolicy(
            delays=self.settings.retry_delays, inprocess_attempts=self.settings.inprocess_attempts
        )
        calls = concurrency or self.settings.concurrency
        prefetch = self.settings.effective_prefetch if concurrency is None else concurrency
        lease_s = max(120.0, 2 * self.settings.lock_duration_s)
        handler: Handler = Dispatcher(
            self.db, connections, policy, cw=self.cw(), max_calls=calls, lease_s=lease_s
        )
        if self.settings.record_values:
            handler = ValueRecorder(handler)  # the console's "values written" (worker/operators/values.py)
        return Worker(
            self.bus,
            handler,
            concurrency=calls,
            prefetch=prefetch,
            shutdown_grace_s=self.settings.shutdown_grace_s,
        )

    def connections(self) -> ConnectionDirectory:
        """The one connection directory: one provider instance per connection, both directions."""
        assert self.http is not None, "open the app with http=True to reach the ERPs"
        if self._connections is None:
            s = self.settings
            self._connections = ConnectionDirectory(self.db, self.http, s.secret, ttl_s=s.connection_cache_s)
        return self._connections

    def cw(self) -> HttpCW | None:
        """CW's APIs when CWI_CW_* are set; without them the inbound path dead-letters NotSupported."""
        s = self.settings
        if self.http is None or not (s.cw_graphql_url or s.cw_write_url or s.cw_key):
            return None
        return HttpCW(
            self.http,
            graphql_url=s.cw_graphql_url or "",
            write_url=s.cw_write_url or "",
            api_key=s.cw_key or "",
        )


def make_database(settings: Settings) -> Database:
    return Database(make_engine(settings.database_url, pool_size=max(4, min(settings.concurrency, 32))))


def make_bus(settings: Settings, db: Database) -> Bus:
    if settings.bus == "local":
        return LocalBus(
            db,
            queue=settings.queue,
            lock_duration_s=settings.lock_duration_s,
            max_delivery_count=settings.max_delivery_count,
        )
    # Imported here: the azure extra is optional, and the local bus must not need it.
    from worker.buses.azure import AzureBus
    from worker.settings import load_azure_settings

    return AzureBus(load_azure_settings(), lock_duration_s=settings.lock_duration_s)


@asynccontextmanager
async def open_app(settings: Settings, *, http: bool = False) -> AsyncIterator[App]:
    db = make_database(settings)
    bus = make_bus(settings, db)
    session = None
    if http:
        connector = aiohttp.TCPConnector(limit=max(100, settings.concurrency * 2), ttl_dns_cache=300)
        session = aiohttp.ClientSession(connector=connector)
    try:
        yield App(settings, db, bus, session)
    finally:
        if session is not None:
            await session.close()
        await bus.close()
        await db.close()
