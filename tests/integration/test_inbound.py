"""The inbound path and echo suppression end to end, on SQLite and PostgreSQL, over real HTTP.

The rig: the worker (local bus, real pipeline), the fake CW (Query + Write API) whose events are
published onto the bus as CW would, the sandbox ERP firing signed webhooks at the real listener
(``worker.ingress`` on uvicorn, endpoints issued as `cwi webhooks url` issues them), which
verifies them and publishes their envelopes to the bus.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pytest

from config_db import clients, sync_log
from config_db.secrets import SecretBox
from contracts import Entity
from providers.generic_rest.sandbox import SandboxServer
from providers.generic_rest.sandbox.wire import ERP_CREATED
from tests.integration.cw_rig import publish_cw_event, settings_with_cw
from worker.bootstrap import App, open_app
from worker.buses.base import OutgoingMessage
from worker.dev.cw_sandbox import CWServer
from worker.dev.listening import Listener, listening
from worker.dev.quiet import run_until_quiet
from worker.ingress.ratelimit import RateLimiter
from worker.messaging.fingerprint import cw_fields

KEY = "inbound-test-key"
TOKEN = "tok-inbound"
CW_KEY = "cw-api-key-inbound"
API_USER = "cwi-api"


def customer(cw_id: str, name: str, n: int = 1) -> dict[str, Any]:
    return {"id": cw_id, "number": str(10000 + n), "name": name, "email": f"post{n}@example.no"}


@dataclass
class Rig:
    app: App
    cw: CWServer
    listener: Listener
    sandboxes: dict[str, SandboxServer] = field(default_factory=dict)

    async def quiet(self) -> Counter[str]:
        drains = [sb.drain_webhooks for sb in self.sandboxes.values()]
        counts = await run_until_quiet(self.app, drains, concurrency=32)
        assert "dead:" not in " ".join(counts), counts
        failed = {
            c: sb.sandbox.webhooks.failed for c, sb in self.sandboxes.items() if sb.sandbox.webhooks.failed
        }
        assert not failed, f"the listener refused webhooks: {failed}"
        return counts

    async def erp_change(self, client: str, **spec: Any) -> dict[str, Any]:
        status, body = self.sandboxes[client].sandbox.user_change({"entity": "customer", **spec})
        assert status == 200, body
        return body

    def erp_record(self, client: str, cw_id: str) -> Any:
        return self.sandboxes[client].sandbox.store.get("customer", cw_id)

    def journal(self, client: str) -> list[dict[str, Any]]:
        rows = self.app.db.run_sync(lambda db: sync_log.entries(db, client_id=client, limit=100_000))
        return list(reversed(rows))

    def actions(self, client: str, direction: str) -> Counter[str]:
        return Counter(r["action"] for r in self.journal(client) if r["direction"] == direction)


@asynccontextmanager
async def _rig(db_url: str, client_ids: list[str], *, api_user: str | None = None) -> AsyncIterator[Rig]:
    async with CWServer(api_key=CW_KEY) as cw:
        settings = settings_with_cw(db_url, cw, secret_key=KEY, cw_key=CW_KEY, concurrency=16)
        # No 429s here: the sandbox fires a client's webhooks back to back.
        limiter = RateLimiter(10_000, 10_000)
        async with open_app(settings, http=True) as app, listening(app, limiter=limiter) as listener:
            cw.cw.on_event = partial(publish_cw_event, app)
            rig = Rig(app, cw, listener)
            try:
                for client in client_ids:
                    sandbox = SandboxServer(token=TOKEN, api_user=API_USER)
                    rig.sandboxes[client] = await sandbox.__aenter__()
                    await app.db.run(
                        partial(_provision, client=client, base_url=sandbox.base_url, api_user=api_user)
                    )
                    endpoint = await listener.endpoint(client)
                    sandbox.sandbox.webhooks.subscribe(endpoint.url, endpoint.secret)
                yield rig
            finally:
                for sandbox in rig.sandboxes.values():
                    await sandbox.__aexit__(None, None, None)


def _provision(db: Any, *, client: str, base_url: str, api_user: str | None) -> None:
    clients.add_client(db, client, client.title())
    settings = {"api_user": api_user} if api_user else {}
    credentials = SecretBox(KEY).encrypt({"token": TOKEN})
    clients.set_connection(
        db, clients.StoredConnection(client, "generic_rest", base_url, settings, credentials, True)
    )


@pytest.fixture
async def rig(migrated_db_url: str) -> AsyncIterator[Rig]:
    async with _rig(migrated_db_url, ["acme"]) as r:
        yield r


async def _seed(rig: Rig, client: str, cw_id: str, name: str = "Acme AS") -> None:
    """A customer created in CW by a user: pushed to the ERP, whose webhook is our echo."""
    await rig.cw.cw.user_change(client, Entity.customer, customer(cw_id, name))
    await rig.quiet()


async def test_our_push_comes_back_as_an_echo_and_is_ignored(rig: Rig) -> None:
    await _seed(rig, "acme", "acme-c1")

    assert (await rig.sandboxes["acme"].stats())["writes"] == {"customer/acme-c1": 1}
    assert rig.cw.cw.stats.writes == 0, "nothing was written back to CW"
    inbound = [r for r in rig.journal("acme") if r["direction"] == "inbound"]
    assert [r["action"] for r in inbound] == ["pending", "echo_ignored"]
    assert inbound[-1]["cw_id"] == "acme-c1"
    assert inbound[-1]["detail"] == "author 'cwi-api' is our API user"  # discovered by _ping


async def test_a_user_change_in_the_erp_is_written_to_cw_once_and_its_cw_event_ignored(rig: Rig) -> None:
    await _seed(rig, "acme", "acme-c1")
    await rig.erp_change("acme", cw_id="acme-c1", data=customer("acme-c1", "Renamed in the ERP"))
    await rig.quiet()

    assert rig.cw.cw.stats.updates == 1 and rig.cw.cw.stats.creates == 0
    assert rig.cw.cw.get("acme", Entity.customer, "acme-c1")["name"] == "Renamed in the ERP"  # type: ignore[index]
    assert (await rig.sandboxes["acme"].stats())["writes"] == {"customer/acme-c1": 1}, "no ping-pong"
    applied = [r for r in rig.journal("acme") if r["action"] == "inbound"]
    assert len(applied) == 1
    assert (applied[0]["cw_id"], applied[0]["external_id"]) == ("acme-c1", "GR-customer-1")
    reverse = [
        r for r in rig.journal("acme") if r["direction"] == "outbound" and r["action"] == "echo_ignored"
    ]
    assert [r["detail"] for r in reverse] == ["the CW event of our own inbound write"]

    # A genuine later change in CW, even back to an earlier value, is pushed again.
    await rig.cw.cw.user_change("acme", Entity.customer, customer("acme-c1", "Acme AS"))
    await rig.quiet()
    assert (await rig.sandboxes["acme"].stats())["writes"] == {"customer/acme-c1": 2}
    assert rig.erp_record("acme", "acme-c1").data["name"] == "Acme AS"
    assert rig.cw.cw.stats.writes == 1


async def test_deletes_both_ways_are_applied_once_and_their_echoes_ignored(rig: Rig) -> None:
    await _seed(rig, "acme", "acme-c1")
    await _seed(rig, "acme", "acme-c2", "Other AS")

    await rig.cw.cw.user_delete("acme", Entity.customer, "acme-c1")  # CW → ERP
    await rig.erp_change("acme", cw_id="acme-c2", delete=True)  # ERP → CW
    await rig.quiet()

    sandbox_stats = await rig.sandboxes["acme"].stats()
    assert sandbox_stats["deletes"] == 1 and rig.erp_record("acme", "acme-c1").deleted
    assert rig.cw.cw.stats.deletes == 1 and rig.cw.cw.get("acme", Entity.customer, "acme-c2") is None
    assert rig.actions("acme", "inbound")["echo_ignored"] == 3  # two creates, the delete we pushed
    assert rig.actions("acme", "outbound")["echo_ignored"] == 1  # the CW delete event of ours
    link = rig.app.db.run_sync(
        lambda db: sync_log.get_link(db, "acme", "generic_rest", "customer", "acme-c2")
    )
    assert link is not None and link.deleted


async def test_a_record_created_in_the_erp_is_created_in_cw_and_linked(rig: Rig) -> None:
    await rig.erp_change("acme", data=customer("ignored", "Made in the ERP", 7))
    await rig.quiet()

    assert rig.cw.cw.stats.creates == 1
    (created,) = [r for r in rig.journal("acme") if r["action"] == "inbound"]
    assert created["external_id"] == "GR-customer-1" and created["cw_id"].startswith("cw-customer-")
    assert rig.cw.cw.get("acme", Entity.customer, created["cw_id"])["name"] == "Made in the ERP"  # type: ignore[index]
    assert (await rig.sandboxes["acme"].stats())["writes"] == {}, "its CW event was not pushed back"

    # The ERP changes it again: the same CW record is updated (found by external id).
    await rig.erp_change("acme", cw_id=f"{ERP_CREATED}GR-customer-1", data=customer("x", "Renamed", 7))
    await rig.quiet()
    assert (rig.cw.cw.stats.creates, rig.cw.cw.stats.updates) == (1, 1)


async def test_a_thin_event_is_filled_from_cws_query_api(rig: Rig) -> None:
    await _seed(rig, "acme", "acme-c1")
    record = customer("acme-c1", "Read from GraphQL")
    rig.cw.cw.records[("acme", "customer", "acme-c1")] = record  # changed in CW without an event
    thin = {
        "id": "thin-1",
        "client_id": "acme",
        "type": "customer.updated",
        "source": "frontend",
        "occurred_at": "2026-11-23T10:00:00Z",
        "record_id": "acme-c1",
    }
    await rig.app.bus.publish([OutgoingMessage(json.dumps(thin).encode(), "thin-1", "acme")])
    await rig.quiet()

    assert rig.cw.cw.stats.queries == 1
    pushed = rig.erp_record("acme", "acme-c1").data
    assert cw_fields(Entity.customer, pushed) == cw_fields(Entity.customer, record)
    assert rig.actions("acme", "inbound")["echo_ignored"] == 2, "the push of the filled record is an echo too"


async def test_a_change_authored_by_our_api_user_is_an_echo(migrated_db_url: str) -> None:
    async with _rig(migrated_db_url, ["acme"], api_user=API_USER) as rig:
        await _seed(rig, "acme", "acme-c1")
        # A change in the ERP that reports our own API user as its author (say, a server-side
        # recalculation after our write) is not applied to CW.
        await rig.erp_change("acme", cw_id="acme-c1", data=customer("acme-c1", "Ours", 1), author=API_USER)
        await rig.quiet()
        assert rig.cw.cw.stats.writes == 0
        echoes = [r["detail"] for r in rig.journal("acme") if r["action"] == "echo_ignored"]
        assert f"author {API_USER!r} is our API user" in echoes


# -- the mixed stream ---------------------------------------------------------------------------


CLIENTS, SEEDED, ERP_BORN = 24, 5, 1
CHANGES = 500  # bench/ has no bigger stream: the property (each change once, no ping-pong) is per change
"""Many clients (sessions) so that the worker has work in parallel; per client, one at a time."""


@dataclass
class Ledger:
    """The genuine changes made on each side, and the records still alive."""

    cw_changes: int = 0
    erp_changes: int = 0
    alive: dict[tuple[str, str], str] = field(default_factory=dict)
    """(client, CW id) → where the record was born: "cw" or "erp" (ERP key)."""


async def _change_from_cw(
    rig: Rig, client: str, cw_id: str, n: int, rng: random.Random, book: Ledger
) -> None:
    if rng.random() < 0.05:
        await rig.cw.cw.user_delete(client, Entity.customer, cw_id)
        del book.alive[(client, cw_id)]
    else:
        current = rig.cw.cw.get(client, Entity.customer, cw_id)
        assert current is not None
        await rig.cw.cw.user_change(client, Entity.customer, {**current, "name": f"CW change {n}"})
    book.cw_changes += 1


async def _change_from_erp(
    rig: Rig, client: str, cw_id: str, n: int, rng: random.Random, book: Ledger
) -> None:
    erp_key = book.alive[(client, cw_id)]
    key = cw_id if erp_key == "cw" else erp_key
    if rng.random() < 0.05:
        await rig.erp_change(client, cw_id=key, delete=True)
        del book.alive[(client, cw_id)]
    else:
        data = dict(rig.erp_record(client, key).data)
        await rig.erp_change(client, cw_id=key, data={**data, "name": f"ERP change {n}"})
    book.erp_changes += 1


async def _erp_creates(rig: Rig, client: str, count: int, start: int, book: Ledger) -> None:
    for n in range(start, start + count):
        await rig.erp_change(client, data=customer("-", f"ERP record {n}", n))
    book.erp_changes += count


@pytest.mark.slow
async def test_a_mixed_stream_of_500_changes_arrives_exactly_once_without_ping_pong(
    migrated_db_url: str,
) -> None:
    client_ids = [f"client{i}" for i in range(CLIENTS)]
    rng = random.Random(5)
    book = Ledger()
    async with _rig(migrated_db_url, client_ids) as rig:
        for client in client_ids:
            for n in range(SEEDED):
                await rig.cw.cw.user_change(
                    client, Entity.customer, customer(f"{client}-c{n}", f"Seed {n}", n)
                )
                book.alive[(client, f"{client}-c{n}")] = "cw"
            await _erp_creates(rig, client, ERP_BORN, 100, book)
        await rig.quiet()
        book.cw_changes, book.erp_changes = 0, 0
        for link in _erp_born_links(rig, client_ids):
            book.alive[link] = _erp_key(rig, *link)

        n = 0
        while book.cw_changes + book.erp_changes < CHANGES:
            # One change per record per round: a record changed on both sides at once is a
            # conflict, not an echo, and is not what this test is about.
            for client, cw_id in rng.sample(sorted(book.alive), k=len(book.alive)):
                n += 1
                born_in_erp = book.alive[(client, cw_id)] != "cw"
                if born_in_erp or rng.random() < 0.5:
                    await _change_from_erp(rig, client, cw_id, n, rng, book)
                else:
                    await _change_from_cw(rig, client, cw_id, n, rng, book)
            await rig.quiet()

        pushed = sum(
            sb.sandbox.stats.creates + sb.sandbox.stats.updates + sb.sandbox.stats.deletes
            for sb in rig.sandboxes.values()
        )
        seeded = SEEDED * len(client_ids)
        assert pushed - seeded == book.cw_changes, "every CW change reached the ERP exactly once"
        assert rig.cw.cw.stats.writes - ERP_BORN * len(client_ids) == book.erp_changes, (
            "every ERP change reached CW once"
        )
        inbound_echoes = sum(rig.actions(c, "inbound")["echo_ignored"] for c in client_ids)
        outbound_echoes = sum(rig.actions(c, "outbound")["echo_ignored"] for c in client_ids)
        assert inbound_echoes == seeded + book.cw_changes
        assert outbound_echoes == ERP_BORN * len(client_ids) + book.erp_changes
        _assert_both_sides_agree(rig, client_ids)


def _erp_born_links(rig: Rig, client_ids: list[str]) -> list[tuple[str, str]]:
    return [(c, r["cw_id"]) for c in client_ids for r in rig.journal(c) if r["action"] == "inbound"]


def _erp_key(rig: Rig, client: str, cw_id: str) -> str:
    (external_id,) = {
        r["external_id"] for r in rig.journal(client) if r["cw_id"] == cw_id and r["action"] == "inbound"
    }
    return f"{ERP_CREATED}{external_id}"


def _assert_both_sides_agree(rig: Rig, client_ids: list[str]) -> None:
    for client in client_ids:
        cw_records = {k[2]: v for k, v in rig.cw.cw.records.items() if k[0] == client}
        erp = rig.sandboxes[client].sandbox.store.records()
        erp_alive = {r.cw_id: r.data for r in erp if not r.deleted}
        by_cw_id = {}
        for erp_id, data in erp_alive.items():
            cw_id = erp_id if not erp_id.startswith(ERP_CREATED) else _cw_id_of(rig, client, erp_id)
            by_cw_id[cw_id] = cw_fields(Entity.customer, data)
        assert by_cw_id == {k: cw_fields(Entity.customer, v) for k, v in cw_records.items()}


def _cw_id_of(rig: Rig, client: str, erp_id: str) -> str:
    external_id = erp_id.removeprefix(ERP_CREATED)
    (cw_id,) = {
        r["cw_id"]
        for r in rig.journal(client)
        if r["external_id"] == external_id and r["action"] == "inbound"
    }
    return str(cw_id)
