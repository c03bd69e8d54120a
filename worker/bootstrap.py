"""The composition root: the only place that builds the real database, bus, HTTP client and pipeline."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp

from config_db.database import make_engine
from worker.buses.base import Bus
from worker.buses.local import LocalBus
from worker.connections import ProviderDirectory
from worker.cw.http import HttpCW
from worker.db import Database
from worker.inbound.apply import InboundHandler
from worker.inbound.directory import InboundDirectory
from worker.pipeline import Pipeline
from worker.retry import RetryPolicy
from worker.runner import Worker
from worker.settings import Settings


@dataclass
class App:
    settings: Settings
    db: Database
    bus: Bus
    http: aiohttp.ClientSession | None = None

    def worker(self, *, concurrency: int | None = None) -> Worker:
        assert self.http is not None, "open the app with http=True to run the worker"
        providers = ProviderDirectory(
            self.db, self.http, self.settings.secret, ttl_s=self.settings.connection_cache_s
        )
        policy = RetryPolicy(
            delays=self.settings.retry_delays, inprocess_attempts=self.settings.inprocess_attempts
        )
        cw = self.cw()
        inbound = None
        if cw is not None:
            directory = InboundDirectory(
                self.db, self.http, self.settings.secret, ttl_s=self.settings.connection_cache_s
            )
            inbound = InboundHandler(self.db, directory, cw, policy)
        calls = concurrency or self.settings.concurrency
        prefetch = self.settings.effective_prefetch if concurrency is None else concurrency
        return Worker(
            self.bus,
            Pipeline(self.db, providers, policy, cw=cw, inbound=inbound, max_calls=calls),
            concurrency=calls,
            prefetch=prefetch,
            shutdown_grace_s=self.settings.shutdown_grace_s,
        )

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
