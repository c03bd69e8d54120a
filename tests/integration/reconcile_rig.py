"""The reconciliation rig: the real worker on the local bus, the fake CW (its events published onto the
bus as CW would), an ERP (the sandbox, or a vendor fake) whose webhooks go to the real listener, and
the hooks a test needs to make drift on purpose: an ERP user's edit or delete whose webhook is
dropped, a connection switched off and on, dead letters purged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

import pytest

from config_db import clients, sync_log
from config_db.database import make_engine
from config_db.migrate import upgrade
from config_db.secrets import SecretBox
from contracts import Address, Customer
from providers import registry
from providers.base import ConnectionSpec
from providers.generic_rest.sandbox import SandboxServer
from tests.fakes.serve import ServedFake, serve_fake
from worker.bootstrap import App, open_app
from worker.buses.base import OutgoingMessage
from worker.dev.cw_sandbox import CWServer
from worker.dev.listening import listening
from worker.dev.quiet import run_until_quiet
from worker.messaging.connections import spec_from_stored
from worker.operators.dlq import DeadLetterOperations
from worker.operators.letters import Selection
from worker.reconcile.run import Options, Reconciler, Report
from worker.reconcile.sides import CWReader, ReconcilingProvider
from worker.settings import Settings

KEY = "reconcile-test-key"
CW_KEY = "cw-api-key-reconcile"
CLIENT = "acme"
TOKEN = "sandbox-reconcile-token"
KINDS = ("generic_rest", "tripletex", "visma_net", "uni_economy")
OSLO = Address(street="Storgata 1", postal_code="0155", city="Oslo", country="NO")


def customer(n: int, name: str | None = None) -> Customer:
    return Customer(
        id=f"c-{n}",
        number=str(10000 + n),
        name=name or f"Customer {n} AS",
        org_number="974760673",
        email=f"post{n}@example.no",
        address=OSLO,
    )


# A user's edit in each ERP (its own kind name and field), and the CW field it shows up in.
EDITS: dict[str, tuple[str, dict[str, Any], str]] = {
    "tripletex": ("customer", {"name": "Renamed in the ERP"}, "name"),
    "visma_net": ("customer", {"name": "Renamed in the ERP"}, "name"),
    "uni_economy": ("customers", {"OrgNumber": "111222333"}, "org_number"),
}


@pytest.fixture
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated SQLite database, for the tests that need not run on PostgreSQL as well."""
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'cwi.db'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


@dataclass
class Rig:
    app: App
    cw: CWServer
    kind: str
    fake: ServedFake | None
    sandbox: SandboxServer | None

    # -- running ---------------------------------------------------------------------------------

    async def quiet(self) -> dict[str, int]:
        drains = [self.fake.fake.callbacks.drain] if self.fake else []
        if self.sandbox is not None:
            drains.append(self.sandbox.drain_webhooks)
        return dict(await run_until_quiet(self.app, drains))

    def spec(self) -> ConnectionSpec:
        stored = self.app.db.run_sync(partial(clients.get_connection, client_id=CLIENT))
        assert stored is not None
        return spec_from_stored(stored, KEY)

    async def reconcile(self, *, page_size: int = 100, **options: Any) -> Report:
        spec = self.spec()
        assert self.app.http is not None
        provider = cast(ReconcilingProvider, registry.build(spec, self.app.http))
        cw = cast(CWReader, self.app.cw())
        reconciler = Reconciler(self.app.db, cw, spec, provider, self.app.bus, page_size=page_size)
        return await reconciler.run(Options(**options))

    def set_connection(self, *, enabled: bool | None = None, **settings: str) -> None:
        def change(db: Any) -> None:
            stored = clients.get_connection(db, CLIENT)
            assert stored is not None
            merged = {**stored.settings, **settings}
            state = stored.enabled if enabled is None else enabled
            clients.set_connection(db, dataclasses.replace(stored, settings=merged, enabled=state))

        self.app.db.run_sync(change)

    async def purge_dead_letters(self) -> int:
        operations = DeadLetterOperations(self.app.db, self.app.bus)
        letters = await operations.select(Selection())
        for letter in letters:
            await operations.purge(letter)
        return len(letters)

    def external_id(self, cw_id: str) -> str:
        link = self.app.db.run_sync(lambda db: sync_log.get_link(db, CLIENT, self.kind, "customer", cw_id))
        assert link is not None and link.external_id is not None
        return link.external_id

    def actions(self, direction: str) -> dict[str, int]:
        rows = self.app.db.run_sync(lambda db: sync_log.entries(db, client_id=CLIENT, limit=100_000))
        counted: dict[str, int] = {}
        for row in rows:
            if row["direction"] == direction:
                counted[str(row["action"])] = counted.get(str(row["action"]), 0) + 1
        return counted

    # -- the ERP as its users change it ----------------------------------------------------------------

    def erp_writes(self) -> int:
        """Writes that reached the ERP through its API (ours), not its users' changes."""
        if self.sandbox is not None:
            stats = self.sandbox.sandbox.stats
            return stats.creates + stats.updates + stats.deletes
        assert self.fake is not None
        return sum(n for k, n in self.fake.fake.writes.items() if k != "subscription")

    def erp_edit(self, record: Customer) -> str:
        """A user's edit of the record in the ERP; returns the CW field it changes."""
        if self.sandbox is not None:
            data = record.model_dump(mode="json") | {"name": "Renamed in the ERP"}
            status, _ = self.sandbox.sandbox.user_change(
                {"entity": "customer", "cw_id": record.id, "data": data}
            )
            assert status == 200
            return "name"
        assert self.fake is not None
        collection, fields, field = EDITS[self.kind]
        self.fake.fake.user_update(collection, self._key(record.id), **fields)
        return field

    def erp_delete(self, record: Customer) -> None:
        if self.sandbox is not None:
            status, _ = self.sandbox.sandbox.user_change(
                {"entity": "customer", "cw_id": record.id, "delete": True}
            )
            assert status == 200
            return
        assert self.fake is not None
        self.fake.fake.user_delete(EDITS[self.kind][0], self._key(record.id))

    def _key(self, cw_id: str) -> Any:
        external = self.external_id(cw_id)
        return external if self.kind == "visma_net" else int(external)

    @contextlib.contextmanager
    def webhooks_dropped(self) -> Iterator[None]:
        """Changes made in here are never announced: the ERP's webhooks are lost."""
        if self.sandbox is not None:
            sender = self.sandbox.sandbox.webhooks
            kept, sender.subscription = sender.subscription, None
            try:
                yield
            finally:
                sender.subscription = kept
            return
        assert self.fake is not None
        fake: Any = self.fake.fake
        if self.kind == "tripletex":
            kept_subs, fake.subscriptions = fake.subscriptions, {}
        elif self.kind == "visma_net":
            kept_hook, fake.webhook = fake.webhook, None
        else:
            kept_plans, fake.store["eventplans"] = fake.store.get("eventplans", {}), {}
        try:
            yield
        finally:
            if self.kind == "tripletex":
                fake.subscriptions = kept_subs
            elif self.kind == "visma_net":
                fake.webhook = kept_hook
            else:
                fake.store["eventplans"] = kept_plans


async def _publish(app: App, event: dict[str, Any]) -> None:
    """What CW does with its events: put them on the bus, the client id as session."""
    await app.bus.publish([OutgoingMessage(json.dumps(event).encode(), event["id"], event["client_id"])])


def _provision(
    db: Any, *, kind: str, base_url: str, settings: dict[str, str], credentials: dict[str, str]
) -> None:
    clients.add_client(db, CLIENT, "Acme")
    encrypted = SecretBox(KEY).encrypt(credentials)
    clients.set_connection(db, clients.StoredConnection(CLIENT, kind, base_url, settings, encrypted, True))


@asynccontextmanager
async def reconcile_rig(db_url: str, kind: str, **extra_settings: str) -> AsyncIterator[Rig]:
    async with CWServer(api_key=CW_KEY) as cw:
        settings = Settings(
            database_url=db_url,
            secret_key=KEY,
            retry_delays=(0.2,),
            connection_cache_s=0,
            cw_graphql_url=cw.graphql_url,
            cw_write_url=cw.write_url,
            cw_api_key=CW_KEY,
        )
        async with open_app(settings, http=True) as app, listening(app) as listener:
            cw.cw.on_event = partial(_publish, app)
            async with _erp(kind) as (fake, sandbox):
                if sandbox is not None:
                    base_url, erp_settings, credentials = sandbox.base_url, {}, {"token": TOKEN}
                else:
                    assert fake is not None
                    base_url, erp_settings, credentials = fake.base_url, fake.settings, fake.credentials
                provision = partial(
                    _provision,
                    kind=kind,
                    base_url=base_url,
                    settings={**erp_settings, **extra_settings},
                    credentials=credentials,
                )
                await app.db.run(provision)
                endpoint = await listener.endpoint(CLIENT)
                if sandbox is not None:
                    sandbox.sandbox.webhooks.subscribe(endpoint.url, endpoint.secret)
                else:
                    assert fake is not None
                    fake.fake.set_webhook(endpoint.url, endpoint.secret)
                yield Rig(app, cw, kind, fake, sandbox)
                if fake is not None:
                    assert getattr(fake.fake, "violations", []) == []


@asynccontextmanager
async def _erp(kind: str) -> AsyncIterator[tuple[ServedFake | None, SandboxServer | None]]:
    if kind == "generic_rest":
        async with SandboxServer(token=TOKEN, api_user="cwi") as sandbox:
            yield None, sandbox
    else:
        async with serve_fake(kind) as fake:
            yield fake, None
