"""The composition root: the only place that builds the real database, bus, HTTP client and pipeline.

The CLI, ``cwi serve``, the demo and the benchmark all build what they need here. The parts each
needs are imported where they are built (not at the top of this module): a command that only reads
the database must not pay for aiohttp, the providers and the pipeline at start-up.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pydantic import SecretStr

from worker.checkpoints import CHECKPOINT_S
from worker.db import Database
from worker.extras import extra_needed
from worker.logging import get_logger
from worker.settings import Settings

if TYPE_CHECKING:
    import aiohttp
    from pydantic_settings import BaseSettings
    from sqlalchemy import Engine

    from config_db.clients import StoredConnection
    from providers.base import Provider
    from worker.buses.base import Bus
    from worker.cw.http import HttpCW
    from worker.messaging.connections import ConnectionDirectory
    from worker.messaging.runner import Worker
    from worker.publisher import Sender

log = get_logger()


@dataclass
class App:
    settings: Settings
    db: Database
    bus: Bus
    http: aiohttp.ClientSession | None = None
    _connections: ConnectionDirectory | None = field(default=None, repr=False)
    _sender: Sender | None = field(default=None, repr=False)

    def worker(self, *, concurrency: int | None = None) -> Worker:
        from config_db.reconcile import holder_name
        from worker.housekeeping import PERIOD_S, keep_house
        from worker.messaging.dispatch import Dispatcher
        from worker.messaging.retry import RetryPolicy
        from worker.messaging.runner import Handler, Worker
        from worker.operators.values import ValueRecorder
        from worker.publisher import Sender, publishing
        from worker.publisher.settings import load_publisher_settings

        assert self.http is not None, "open the app with http=True to run the worker"
        connections = self.connections()
        policy = RetryPolicy(
            delays=self.settings.retry_delays, inprocess_attempts=self.settings.inprocess_attempts
        )
        calls = concurrency or self.settings.concurrency
        prefetch = self.settings.effective_prefetch if concurrency is None else concurrency
        window = dt.timedelta(seconds=self.settings.echo_window_s)
        holder = holder_name()  # this worker's name in the database's housekeeping turn
        handler: Handler = Dispatcher(
            self.db,
            connections,
            policy,
            cw=self.cw(),
            max_calls=calls,
            lease_s=self.settings.effective_lease_s,
            exclusive_sessions=getattr(self.bus, "exclusive_sessions", False),
        )
        if self.settings.record_values:
            handler = ValueRecorder(handler)  # the console's "values written" (worker/operators/values.py)
        # Outermost: delivery messages go to the publisher, and completed changes fan out to subscribers.
        if self._sender is None:
            self._sender = Sender(load_publisher_settings())
        handler = publishing(
            handler,
            self.bus,
            self._sender,
            secret_key=self.settings.secret,
            lease_s=self.settings.effective_lease_s,
        )
        return Worker(
            self.bus,
            handler,
            housekeeping=lambda: keep_house(self.db, window, self.settings.synclog_retention, holder=holder),
            housekeeping_s=PERIOD_S,
            concurrency=calls,
            prefetch=prefetch,
            shutdown_grace_s=self.settings.shutdown_grace_s,
        )

    def connections(self) -> ConnectionDirectory:
        """The one connection directory: one provider instance per connection, both directions."""
        from worker.messaging.connections import ConnectionDirectory

        assert self.http is not None, "open the app with http=True to reach the ERPs"
        if self._connections is None:
            s = self.settings
            self._connections = ConnectionDirectory(self.db, self.http, s.secret, ttl_s=s.connection_cache_s)
        return self._connections

    def cw(self) -> HttpCW | None:
        """CW's APIs when CWI_CW_* are set; without them the inbound path dead-letters NotSupported."""
        from worker.cw.http import HttpCW

        s = self.settings
        if self.http is None or not (s.cw_graphql_url or s.cw_write_url or s.cw_key):
            return None
        return HttpCW(
            self.http,
            graphql_url=s.cw_graphql_url or "",
            write_url=s.cw_write_url or "",
            api_key=s.cw_key or "",
        )


def make_engine(settings: Settings, *, pool_size: int | None = None, autocheckpoint: bool = True) -> Engine:
    """The configuration database's engine; a missing driver extra is a MissingExtraError."""
    from config_db.database import make_engine as engine_for

    size = max(4, min(settings.concurrency, 32)) if pool_size is None else pool_size
    with extra_needed(f"the database {settings.database_url.split(':', 1)[0]}"):
        return engine_for(settings.database_url, pool_size=size, autocheckpoint=autocheckpoint)


def make_database(settings: Settings) -> Database:
    """The worker's database. On an SQLite file its commits leave checkpoints to a thread of their
    own (``worker.checkpoints.Checkpointer``)."""
    from config_db.database import is_sqlite_file

    background = is_sqlite_file(settings.database_url)
    return Database(
        make_engine(settings, autocheckpoint=not background),
        outage_exit_s=settings.outage_exit_s,
        checkpoint_s=CHECKPOINT_S if background else None,
    )


async def wait_for_database(db: Database, settings: Settings) -> None:
    """At start, wait up to CWI_STARTUP_WAIT_S for the database (an orchestrator may be starting it
    beside us): one line saying what we wait for, then DatabaseUnavailable naming the setting."""
    from worker.outage import DatabaseUnavailable, one_line, unreachable

    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.startup_wait_s
    pause, said = 0.2, False
    while True:
        try:
            await db.ping()
            return
        except Exception as exc:
            if not unreachable(exc):
                raise
            if loop.time() + pause > deadline:
                raise DatabaseUnavailable(
                    f"CWI_DATABASE_URL: the database did not answer within {settings.startup_wait_s:g} s "
                    f"(CWI_STARTUP_WAIT_S): {one_line(exc)}"
                ) from None
            if not said:
                log.warning(
                    "database not reachable yet; waiting", wait_s=settings.startup_wait_s, error=one_line(exc)
                )
                said = True
        await asyncio.sleep(pause)
        pause = min(pause * 2, 2.0)


@contextmanager
def database(settings: Settings) -> Iterator[Database]:
    """A database for synchronous use (``run_sync``), its connections closed at the end."""
    db = make_database(settings)
    try:
        yield db
    finally:
        db.engine.dispose()


def upgrade_database(settings: Settings) -> str | None:
    """Create or migrate the configuration database to the latest schema; its revision after."""
    from config_db.migrate import stored_revision, upgrade

    engine = make_engine(settings)
    try:
        upgrade(engine)
        return stored_revision(engine)
    finally:
        engine.dispose()


def database_revision(settings: Settings) -> str | None:
    """The schema revision the database is at (None: never migrated), with one plain query."""
    from config_db.migrate import stored_revision

    engine = make_engine(settings, pool_size=0 if "sqlite" in settings.database_url else 1)
    try:
        return stored_revision(engine)
    finally:
        engine.dispose()


def make_bus(settings: Settings, db: Database) -> Bus:
    if settings.bus == "local":
        from worker.buses.local import LocalBus

        return LocalBus(
            db,
            queue=settings.queue,
            lock_duration_s=settings.lock_duration_s,
            max_delivery_count=settings.max_delivery_count,
        )
    # Imported here: the azure extra is optional, and the local bus must not need it.
    with extra_needed("CWI_BUS=azure"):
        from worker.buses.azure import AzureBus
    from worker.settings import load_azure_settings

    capacity = settings.concurrency + settings.effective_prefetch
    return AzureBus(load_azure_settings(), lock_duration_s=settings.lock_duration_s, prefetch=capacity)


def http_session(settings: Settings) -> aiohttp.ClientSession:
    """The worker's HTTP client: one session, connections pooled across ERPs and CW's APIs."""
    import aiohttp

    from worker import tracing

    connector = aiohttp.TCPConnector(limit=max(100, settings.concurrency * 2), ttl_dns_cache=300)
    # No cookies kept: one session serves every client, and a cookie one client's ERP set would go
    # with every other client's requests to the same host. Each request carries its own credentials.
    # While tracing is on, a span for every request (worker/tracing.py).
    return aiohttp.ClientSession(
        connector=connector, cookie_jar=aiohttp.DummyCookieJar(), trace_configs=tracing.trace_configs()
    )


@asynccontextmanager
async def open_app(settings: Settings, *, http: bool = False, wait: bool = False) -> AsyncIterator[App]:
    """The app's parts; ``wait`` (long-running commands) waits at start for the database."""
    db = make_database(settings)
    if wait:
        try:
            await wait_for_database(db, settings)
        except BaseException:
            await db.close()
            raise
    bus = make_bus(settings, db)
    session = http_session(settings) if http else None
    app = App(settings, db, bus, session)
    try:
        yield app
    finally:
        if app._sender is not None:
            await app._sender.close()
        if session is not None:
            await session.close()
        await bus.close()
        await db.close()


@asynccontextmanager
async def open_provider(settings: Settings, stored: StoredConnection) -> AsyncIterator[Provider]:
    """The provider of one stored connection (credentials decrypted), with an HTTP session of its own."""
    import aiohttp

    from providers import registry
    from worker.messaging.connections import spec_from_stored

    spec = spec_from_stored(stored, settings.secret)
    async with aiohttp.ClientSession() as session:
        yield registry.build(spec, session)


async def ready_to_start(settings: Settings, *, worker: bool) -> list[str]:
    """Before a long-running command: wait for the database (CWI_STARTUP_WAIT_S; DatabaseUnavailable
    naming the setting when it does not come), then, for a worker, one line per enabled connection
    whose credentials this CWI_SECRET_KEY cannot read (the worker must not start with those)."""
    from config_db import clients
    from worker.messaging.connections import unreadable_credentials

    db = make_database(settings)
    try:
        await wait_for_database(db, settings)
        if not worker:
            return []
        stored = await db.run(clients.list_connections)
    finally:
        await db.close()
    return unreadable_credentials(stored, settings.secret)


def _masked(settings: BaseSettings) -> dict[str, object]:
    shown: dict[str, object] = settings.model_dump(mode="json")
    for name, value in list(shown.items()):
        if isinstance(getattr(settings, name), SecretStr) or (name.endswith("_key") and value):
            shown[name] = "***" if value else None
    return shown


def startup_summary(settings: Settings) -> dict[str, object]:
    """The configuration a worker runs with, for its start-up log line (with CWI_BUS=azure the
    Service Bus's too, so that a mistake there stops it before it starts): secrets masked, the
    database URL's password masked."""
    from config_db.database import make_url

    shown = _masked(settings)
    if settings.bus == "azure":  # read (and checked) here, before anything starts
        from worker.settings import load_azure_settings

        shown.update(_masked(load_azure_settings()))
    try:
        shown["database_url"] = repr(make_url(settings.database_url))
    except Exception:  # noqa: BLE001 - an unparsable URL is shown as unparsable, never raw
        shown["database_url"] = "(not a URL)"
    return shown
