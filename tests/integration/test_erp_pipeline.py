"""The worker end to end through each ERP provider and its spec-validating fake.

The same cases run for Tripletex, Visma.net and Uni Economy: envelopes on the local bus (SQLite
file), the real pipeline and worker, the real provider, the fake ERP over HTTP on 127.0.0.1.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import aiohttp
import pytest
from sqlalchemy import Connection

from config_db import clients, sync_log
from config_db.database import make_engine
from config_db.models import metadata
from contracts import parse_envelope
from providers.base import OutboundChange
from tests.fakes.serve import KINDS, ServedFake, serve_fake
from tests.fakes.tripletex import FakeTripletex
from tests.fakes.uni_economy import FakeUni
from tests.fakes.visma_net import FakeVismaNet
from worker.buses.base import OutgoingMessage
from worker.buses.local import LocalBus
from worker.db import Database
from worker.messaging.connections import ConnectionDirectory
from worker.messaging.dispatch import Dispatcher
from worker.messaging.retry import RetryPolicy
from worker.messaging.runner import RunStats, Worker

KEY = "erp-pipeline-test-key"
CLIENT = "acme"
RECOVERING = "recovering: an earlier attempt may have reached the ERP"


# -- what each fake holds and how to make it misbehave ---------------------------------------------


F = TypeVar("F", FakeTripletex, FakeVismaNet, FakeUni)
T = TypeVar("T", FakeVismaNet, FakeUni)


@dataclass
class Controls(ABC, Generic[F]):
    """What a fake holds and how to make it misbehave: here what every fake does alike, in the
    subclasses where the vendors differ."""

    fake: F

    @abstractmethod
    def customers(self) -> dict[str, str]:
        """External id → name of every customer in the ERP."""

    @abstractmethod
    def invoice_documents(self) -> dict[str, list[str]]:
        """Ids of the documents invoices leave behind, by kind; ``"invoice"`` is the invoice itself."""

    @abstractmethod
    def fail_next_with_429(self) -> None: ...

    @abstractmethod
    def reject_next_write(self, message: str) -> None:
        """The next write is refused with a vendor validation body carrying ``message``."""

    @abstractmethod
    def tokens_issued(self) -> int: ...

    def expire_tokens(self) -> None:
        self.fake.expire_tokens()

    def failures_left(self) -> int:
        """Injected failures not yet served."""
        return len(self.fake._failures)


@dataclass
class TripletexControls(Controls[FakeTripletex]):
    def customers(self) -> dict[str, str]:
        return {str(c["id"]): c["name"] for c in self.fake.objects("customer")}

    def invoice_documents(self) -> dict[str, list[str]]:
        return {kind: [str(o["id"]) for o in self.fake.objects(kind)] for kind in ("order", "invoice")}

    def fail_next_with_429(self) -> None:
        self.fake.fail_next(1, 429, on="POST /customer", reset=0)

    def reject_next_write(self, message: str) -> None:
        self.fake.fail_next(1, 422, on="POST /customer", fields={"organizationNumber": message})

    def tokens_issued(self) -> int:
        return self.fake.sessions_created


@dataclass
class TokenControls(Controls[T]):
    """Visma.net and Uni Economy: OAuth tokens counted, failures queued with a Retry-After."""

    REJECT_STATUS: ClassVar[int]

    def fail_next_with_429(self) -> None:
        self.fake.fail_next(1, 429, retry_after="0")

    def reject_next_write(self, message: str) -> None:
        self.fake.fail_next(1, self.REJECT_STATUS, message=message)

    def tokens_issued(self) -> int:
        return self.fake.token_requests


@dataclass
class VismaNetControls(TokenControls[FakeVismaNet]):
    REJECT_STATUS = 422

    def customers(self) -> dict[str, str]:
        return {number: c["name"] for number, c in self.fake.customers.items()}

    def invoice_documents(self) -> dict[str, list[str]]:
        return {"invoice": list(self.fake.invoices)}


@dataclass
class UniControls(TokenControls[FakeUni]):
    REJECT_STATUS = 400

    def customers(self) -> dict[str, str]:
        return {str(c["ID"]): c["Info"]["Name"] for c in self.fake.entities("customers")}

    def invoice_documents(self) -> dict[str, list[str]]:
        return {"invoice": [str(i["ID"]) for i in self.fake.entities("invoices")]}


def controls_of(served: ServedFake) -> Controls[Any]:
    fake = served.fake
    if isinstance(fake, FakeTripletex):
        return TripletexControls(fake)
    if isinstance(fake, FakeVismaNet):
        return VismaNetControls(fake)
    return UniControls(fake)


# -- the rig: SQLite file, local bus, one long-lived pipeline, the fake ----------------------------


@dataclass
class Rig:
    kind: str
    db: Database
    bus: LocalBus
    http: aiohttp.ClientSession
    erp: Controls[Any]
    pipeline: Dispatcher

    async def publish(self, *envs: dict[str, Any]) -> None:
        """Each envelope as its own transport message: the same envelope twice is a redelivery."""
        await self.bus.publish(
            [
                OutgoingMessage(json.dumps(e).encode(), f"t-{e['id']}-{i}", e["client_id"])
                for i, e in enumerate(envs)
            ]
        )

    async def run(self) -> RunStats:
        # A fresh Worker on the same pipeline: the providers (and their tokens) live on, as in a process.
        return await Worker(self.bus, self.pipeline, concurrency=4).run(until_idle=True)

    def log(self, message_id: str) -> list[dict[str, Any]]:
        """The message's sync-log entries, oldest first."""
        return list(reversed(self.db.run_sync(lambda c: sync_log.entries(c, message_id=message_id))))

    def actions(self, message_id: str) -> list[str]:
        return [str(e["action"]) for e in self.log(message_id)]


@pytest.fixture(params=KINDS)
async def served(request: pytest.FixtureRequest) -> AsyncIterator[ServedFake]:
    async with serve_fake(request.param) as fake:
        yield fake
        assert fake.fake.violations == [], "a request the provider sent broke the vendor's spec"


@pytest.fixture
async def rig(served: ServedFake, tmp_path: Path) -> AsyncIterator[Rig]:
    engine = make_engine(f"sqlite:///{tmp_path / 'cwi.db'}")
    metadata.create_all(engine)
    db = Database(engine)
    stored = served.connection(CLIENT, KEY)

    def provision(conn: Connection) -> None:
        clients.add_client(conn, CLIENT, "Acme AS")
        clients.set_connection(conn, stored)

    await db.run(provision)
    policy = RetryPolicy(delays=(60.0,), inprocess_attempts=3, base_wait_s=0.01)
    async with aiohttp.ClientSession() as http:
        pipeline = Dispatcher(db, ConnectionDirectory(db, http, KEY), policy)
        yield Rig(served.kind, db, LocalBus(db, lock_duration_s=10), http, controls_of(served), pipeline)
    await db.close()


# -- envelopes ------------------------------------------------------------------------------------


def envelope(message_id: str, type_: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": message_id,
        "client_id": CLIENT,
        "type": type_,
        "source": "frontend",
        "occurred_at": "2026-11-23T10:00:00Z",
        "data": data,
    }


def customer(
    message_id: str = "e-cus-1", type_: str = "customer.created", name: str = "Acme AS"
) -> dict[str, Any]:
    address = {"street": "Storgata 1", "postal_code": "0155", "city": "Oslo", "country": "NO"}
    data = {"id": "cw-c1", "number": "1001", "name": name, "email": "post@acme.no", "address": address}
    return envelope(message_id, type_, data)


def invoice(message_id: str = "e-inv-1", vat_rate: str = "25") -> dict[str, Any]:
    lines = [
        {"description": "Roofing", "quantity": "7.5", "unit_price": "950.00", "vat_rate": vat_rate},
        {"description": "Permit fee", "quantity": "1", "unit_price": "400.00", "vat_rate": "0"},
    ]
    data = {
        "id": "cw-i1",
        "number": "20001",
        "customer_id": "cw-c1",
        "customer_number": "1001",
        "invoice_date": "2026-11-20",
        "due_date": "2026-12-04",
        "currency": "NOK",
        "lines": lines,
        "reference": "PO 55",
    }
    return envelope(message_id, "invoice.created", data)


async def push_directly_then_crash(rig: Rig, env: dict[str, Any]) -> None:
    """A first attempt whose write reached the ERP, then a crash before the outcome was journalled."""
    parsed = parse_envelope(json.dumps(env))
    provider = await ConnectionDirectory(rig.db, rig.http, KEY).provider_for(CLIENT)
    change = OutboundChange(parsed.id, parsed.entity, parsed.action, parsed.cw_id, parsed.data)
    await provider.push(change)
    intent = sync_log.Entry(
        direction="outbound",
        action="pending",
        message_id=parsed.id,
        client_id=CLIENT,
        provider=rig.kind,
        entity=parsed.entity.value,
        cw_id=parsed.cw_id,
    )
    await rig.db.run(lambda c: sync_log.record(c, intent))


# -- customers ------------------------------------------------------------------------------------


async def test_customer_created(rig: Rig) -> None:
    await rig.publish(customer())
    stats = await rig.run()

    assert stats.counts == {"created": 1}
    [(external_id, name)] = rig.erp.customers().items()
    assert name == "Acme AS"
    [pending, created] = rig.log("e-cus-1")
    assert (pending["action"], created["action"]) == ("pending", "created")
    assert created["external_id"] == external_id and created["provider"] == rig.kind


async def test_customer_updated_in_place(rig: Rig) -> None:
    await rig.publish(customer())
    await rig.run()
    [external_id] = rig.erp.customers()

    await rig.publish(customer("e-cus-2", "customer.updated", name="Acme Holding AS"))
    stats = await rig.run()

    assert stats.counts == {"updated": 1}
    assert rig.erp.customers() == {external_id: "Acme Holding AS"}
    assert rig.actions("e-cus-2") == ["pending", "updated"]
    assert rig.log("e-cus-2")[-1]["external_id"] == external_id


async def test_redelivered_envelope_is_a_duplicate(rig: Rig) -> None:
    await rig.publish(customer(), customer())
    stats = await rig.run()

    assert stats.counts == {"created": 1, "duplicate": 1}
    assert len(rig.erp.customers()) == 1
    assert rig.actions("e-cus-1") == ["pending", "created", "duplicate"]


async def test_crash_after_the_write_reached_the_erp_does_not_duplicate(rig: Rig) -> None:
    await push_directly_then_crash(rig, customer())
    assert len(rig.erp.customers()) == 1

    await rig.publish(customer())
    stats = await rig.run()

    assert "created" not in stats.counts and stats.processed == 1
    assert len(rig.erp.customers()) == 1
    [intent, retried, outcome] = rig.log("e-cus-1")
    assert (intent["action"], retried["action"], retried["detail"]) == ("pending", "pending", RECOVERING)
    assert outcome["action"] in {"updated", "unchanged"}
    assert outcome["external_id"] in rig.erp.customers()


# -- limits, tokens, vendor errors ----------------------------------------------------------------


async def test_429_then_success_is_retried_in_process(rig: Rig) -> None:
    rig.erp.fail_next_with_429()
    await rig.publish(customer())
    stats = await rig.run()

    assert rig.erp.failures_left() == 0, "the 429 was served"
    assert stats.counts == {"created": 1}
    assert len(rig.erp.customers()) == 1
    assert rig.actions("e-cus-1") == ["pending", "created"], "no delayed retry was needed"


async def test_expired_token_is_refreshed_once(rig: Rig) -> None:
    await rig.publish(customer())
    await rig.run()
    assert rig.erp.tokens_issued() == 1
    rig.erp.expire_tokens()

    await rig.publish(customer("e-cus-2", "customer.updated", name="Acme Holding AS"))
    stats = await rig.run()

    assert stats.counts == {"updated": 1}
    assert rig.erp.tokens_issued() == 2
    assert list(rig.erp.customers().values()) == ["Acme Holding AS"]


async def test_vendor_validation_error_dead_letters_with_its_text(rig: Rig) -> None:
    message = "Ugyldig organisasjonsnummer 999888777"
    rig.erp.reject_next_write(message)
    await rig.publish(customer())
    stats = await rig.run()

    assert stats.counts == {"dead:ProviderRejected": 1}
    [dead] = await rig.bus.dead_letters()
    assert dead.reason == "ProviderRejected" and message in dead.description
    assert rig.erp.customers() == {}
    assert rig.actions("e-cus-1") == ["pending", "failed"]


# -- invoices -------------------------------------------------------------------------------------


async def test_invoice_with_unmapped_vat_rate_is_a_mapping_error(rig: Rig) -> None:
    await rig.publish(customer(), invoice(vat_rate="15"))
    stats = await rig.run()

    assert stats.counts == {"created": 1, "dead:MappingError": 1}
    [dead] = await rig.bus.dead_letters()
    assert dead.reason == "MappingError" and "vat_code.15" in dead.description
    assert all(ids == [] for ids in rig.erp.invoice_documents().values())


async def test_invoice_created_once_when_delivered_twice(rig: Rig) -> None:
    await rig.publish(customer(), invoice(), invoice())
    stats = await rig.run()

    assert stats.counts == {"created": 2, "duplicate": 1}
    documents = rig.erp.invoice_documents()
    assert all(len(ids) == 1 for ids in documents.values()), documents
    assert rig.actions("e-inv-1") == ["pending", "created", "duplicate"]
    assert rig.log("e-inv-1")[1]["external_id"] == documents["invoice"][0]


async def test_invoice_recovered_after_the_write_reached_the_erp(rig: Rig) -> None:
    await rig.publish(customer())
    await rig.run()
    await push_directly_then_crash(rig, invoice())
    before = rig.erp.invoice_documents()

    await rig.publish(invoice())
    stats = await rig.run()

    assert "created" not in stats.counts and stats.processed == 1
    assert rig.erp.invoice_documents() == before
    assert all(len(ids) == 1 for ids in before.values()), before
    [intent, retried, outcome] = rig.log("e-inv-1")
    assert (intent["action"], retried["action"], retried["detail"]) == ("pending", "pending", RECOVERING)
    assert outcome["action"] in {"updated", "unchanged"}
    assert outcome["external_id"] == before["invoice"][0]
