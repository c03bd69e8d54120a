"""The ERP side of the burst echo test, one adapter per provider kind, each over its own fake.

An adapter makes changes as an ERP user would (through the fake's control endpoints, over HTTP),
reads which customers the ERP holds (by CW number), lists the writes that came through the ERP's
API (ours), and maps every record back to CW fields as the provider's inbound path reads them.
Customers only: ``number`` and ``name``, the name carrying who made the change.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from contracts import Entity
from providers.generic_rest.sandbox import SandboxServer
from providers.generic_rest.sandbox.firing import Disorder
from tests.fakes.control import PREFIX
from tests.fakes.history import WriteLog
from tests.fakes.serve import ServedFake, serve_fake
from tests.fakes.tripletex import FakeTripletex
from tests.fakes.uni_economy import FakeUni
from tests.fakes.visma_net import FakeVismaNet
from worker.messaging.connections import ErpConnection
from worker.messaging.fingerprint import cw_fields

GENERIC_TOKEN = "tok-burst"
GENERIC_API_USER = "cwi-burst"


@dataclass(frozen=True, slots=True)
class OurWrite:
    """A write that came through the ERP's API: ours."""

    key: str
    """The record's id in the ERP, as the sync log's ``external_id`` holds it."""
    action: str  # created, updated, deleted
    number: str | None
    name: str | None
    version: str | None


class ErpSide(Protocol):
    kind: str
    base_url: str
    settings: dict[str, str]
    credentials: dict[str, str]
    cw_deletes: bool
    """Whether a CW delete of a customer can reach this ERP (Visma.net's API cannot delete one)."""

    def set_webhook(self, url: str, secret: str) -> None: ...
    def disorder(self, disorder: Disorder) -> None: ...
    async def create(self, http: aiohttp.ClientSession, number: str, name: str) -> bool: ...
    async def update(self, http: aiohttp.ClientSession, key: str, name: str) -> bool: ...
    async def delete(self, http: aiohttp.ClientSession, key: str) -> bool: ...
    def records(self) -> list[tuple[str, str]]:
        """(CW number, the record's key in the ERP) of every customer the ERP holds now."""
        ...

    def our_writes(self) -> list[OurWrite]: ...
    async def mapped_back(self, conn: ErpConnection) -> dict[str, dict[str, Any]]:
        """CW number → the ERP's record as CW fields (what the inbound path would write to CW)."""
        ...

    async def drain(self) -> None: ...
    def undelivered(self) -> list[str]:
        """Webhook calls the listener did not accept (each a change CW never heard of)."""
        ...

    def violations(self) -> list[str]: ...


def _unique(by_number: dict[str, dict[str, Any]], records: int) -> dict[str, dict[str, Any]]:
    assert len(by_number) == records, "the ERP holds a customer number twice (a double create)"
    return by_number


async def _post(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> bool:
    """True when the change was made; False when its record had gone meanwhile (the worker applied
    a delete between the test's look at the ERP and the user's change)."""
    async with http.post(url, json=body) as resp:
        answer = await resp.json()
        assert resp.status in (200, 404), (url, body, answer)
        return resp.status == 200


class GenericSide:
    """The sandbox ERP (generic REST): records keyed by CW id; ERP-born ones by ``erp:<external id>``."""

    kind = "generic_rest"
    cw_deletes = True

    def __init__(self, server: SandboxServer) -> None:
        self.server = server
        self.sandbox = server.sandbox
        self.base_url = server.base_url
        self.settings: dict[str, str] = {}
        self.credentials = {"token": GENERIC_TOKEN}
        self.sandbox.webhooks.history = []

    def set_webhook(self, url: str, secret: str) -> None:
        self.sandbox.webhooks.subscribe(url, secret)

    def disorder(self, disorder: Disorder) -> None:
        self.sandbox.webhooks.disorder = disorder

    async def _change(self, http: aiohttp.ClientSession, spec: dict[str, Any]) -> bool:
        return await _post(http, f"{self.base_url}/_sandbox/user-change", {"entity": "customer", **spec})

    async def create(self, http: aiohttp.ClientSession, number: str, name: str) -> bool:
        return await self._change(http, {"data": {"number": number, "name": name}})

    async def update(self, http: aiohttp.ClientSession, key: str, name: str) -> bool:
        record = self.sandbox.store.get("customer", key)
        assert record is not None
        return await self._change(http, {"cw_id": key, "data": {**record.data, "name": name}})

    async def delete(self, http: aiohttp.ClientSession, key: str) -> bool:
        return await self._change(http, {"cw_id": key, "delete": True})

    def records(self) -> list[tuple[str, str]]:
        records = self.sandbox.store.records()
        return [(r.data["number"], r.cw_id) for r in records if r.entity == "customer" and not r.deleted]

    def our_writes(self) -> list[OurWrite]:
        found = []
        for event in self.sandbox.webhooks.history or []:
            change = event["data"]
            if change["author"] != GENERIC_API_USER:
                continue
            record = change.get("record") or {}
            action = event["type"].split(".")[1]
            version = str(change["version"])
            found.append(
                OurWrite(change["external_id"], action, record.get("number"), record.get("name"), version)
            )
        return found

    async def mapped_back(self, conn: ErpConnection) -> dict[str, dict[str, Any]]:
        records = [r for r in self.sandbox.store.records() if r.entity == "customer" and not r.deleted]
        return _unique({r.data["number"]: cw_fields(Entity.customer, r.data) for r in records}, len(records))

    async def drain(self) -> None:
        await self.server.drain_webhooks()

    def undelivered(self) -> list[str]:
        return [f"{self.sandbox.webhooks.failed} failed"] if self.sandbox.webhooks.failed else []

    def violations(self) -> list[str]:
        return []


class VendorSide(ABC):
    """A vendor fake (tests/fakes), changed through its ``/_control`` endpoints."""

    cw_deletes = True
    collection = "customer"

    def __init__(self, served: ServedFake) -> None:
        self.served = served
        self.kind = served.kind
        self.base_url = served.base_url
        self.settings = served.settings
        self.credentials = served.credentials
        self.control = served.base_url.rstrip("/").removesuffix("/v2") + PREFIX

    @property
    def log(self) -> WriteLog:
        log: WriteLog = self.served.fake.api_writes
        return log

    def set_webhook(self, url: str, secret: str) -> None:
        self.served.fake.set_webhook(url, secret)

    def disorder(self, disorder: Disorder) -> None:
        self.served.fake.callbacks.disorder = disorder

    async def _control(self, http: aiohttp.ClientSession, action: str, body: dict[str, Any]) -> bool:
        return await _post(http, self.control + action, body)

    async def delete(self, http: aiohttp.ClientSession, key: str) -> bool:
        return await self._control(http, "user_delete", {"kind": self.collection, "id": self._id(key)})

    def _id(self, key: str) -> Any:
        return int(key)

    @abstractmethod
    async def create(self, http: aiohttp.ClientSession, number: str, name: str) -> bool: ...

    @abstractmethod
    async def update(self, http: aiohttp.ClientSession, key: str, name: str) -> bool: ...

    @abstractmethod
    def records(self) -> list[tuple[str, str]]: ...

    @abstractmethod
    def our_writes(self) -> list[OurWrite]: ...

    async def mapped_back(self, conn: ErpConnection) -> dict[str, dict[str, Any]]:
        reader = conn.inbound()
        out = {}
        for number, key in self.records():
            record = await reader.fetch(Entity.customer, key)
            assert record is not None, f"{self.kind} customer {key} could not be read"
            out[number] = cw_fields(Entity.customer, dict(reader.to_cw(Entity.customer, record.value).fields))
        return _unique(out, len(self.records()))

    async def drain(self) -> None:
        await self.served.fake.callbacks.drain()

    def undelivered(self) -> list[str]:
        return [f"{d.status} {d.error}" for d in self.served.fake.callbacks.deliveries if d.status != 202]

    def violations(self) -> list[str]:
        return list(self.served.fake.violations)

    def _writes(self, version_of: Any, number_of: Any, name_of: Any) -> list[OurWrite]:
        return [
            OurWrite(
                w.key,
                w.action,
                str(number_of(w.value)) if w.value else None,
                name_of(w.value) if w.value else None,
                version_of(w.value) if w.value else None,
            )
            for w in self.log.writes
            if w.kind == self.collection
        ]


class TripletexSide(VendorSide):
    @property
    def fake(self) -> FakeTripletex:
        assert isinstance(self.served.fake, FakeTripletex)
        return self.served.fake

    async def create(self, http: aiohttp.ClientSession, number: str, name: str) -> bool:
        value = {"name": name, "customerNumber": int(number)}
        return await self._control(http, "user_create", {"kind": "customer", "value": value})

    async def update(self, http: aiohttp.ClientSession, key: str, name: str) -> bool:
        body = {"kind": "customer", "id": int(key), "fields": {"name": name}}
        return await self._control(http, "user_update", body)

    def records(self) -> list[tuple[str, str]]:
        return [(str(o["customerNumber"]), str(o["id"])) for o in self.fake.objects("customer")]

    def our_writes(self) -> list[OurWrite]:
        return self._writes(lambda v: str(v["version"]), lambda v: v["customerNumber"], lambda v: v["name"])


class VismaSide(VendorSide):
    cw_deletes = False  # the API cannot delete a customer (NotSupported): only users delete them

    @property
    def fake(self) -> FakeVismaNet:
        assert isinstance(self.served.fake, FakeVismaNet)
        return self.served.fake

    def _id(self, key: str) -> Any:
        return key

    async def create(self, http: aiohttp.ClientSession, number: str, name: str) -> bool:
        value = {"number": number, "name": name}
        return await self._control(http, "user_create", {"kind": "customer", "value": value})

    async def update(self, http: aiohttp.ClientSession, key: str, name: str) -> bool:
        return await self._control(
            http, "user_update", {"kind": "customer", "id": key, "fields": {"name": name}}
        )

    def records(self) -> list[tuple[str, str]]:
        return [(key, key) for key in self.fake.customers]

    def our_writes(self) -> list[OurWrite]:
        return self._writes(
            lambda v: v.get("lastModifiedDateTime"), lambda v: v["number"], lambda v: v["name"]
        )


class UniSide(VendorSide):
    collection = "customers"

    @property
    def fake(self) -> FakeUni:
        assert isinstance(self.served.fake, FakeUni)
        return self.served.fake

    async def create(self, http: aiohttp.ClientSession, number: str, name: str) -> bool:
        value = {"CustomerNumber": int(number), "Info": {"Name": name}}
        return await self._control(http, "user_create", {"kind": "customers", "value": value})

    async def update(self, http: aiohttp.ClientSession, key: str, name: str) -> bool:
        info = self.fake.store["customers"][int(key)]["Info"]
        fields = {"Info": {"ID": info["ID"], "Name": name}}
        return await self._control(
            http, "user_update", {"kind": "customers", "id": int(key), "fields": fields}
        )

    def records(self) -> list[tuple[str, str]]:
        return [(str(e["CustomerNumber"]), str(e["ID"])) for e in self.fake.entities("customers")]

    def our_writes(self) -> list[OurWrite]:
        return self._writes(
            lambda v: v.get("UpdatedAt") or v.get("CreatedAt"),
            lambda v: v["CustomerNumber"],
            lambda v: v["Info"]["Name"],
        )


_VENDORS: dict[str, Callable[[ServedFake], VendorSide]] = {
    "tripletex": TripletexSide,
    "visma_net": VismaSide,
    "uni_economy": UniSide,
}
KINDS = ("generic_rest", *_VENDORS)


@asynccontextmanager
async def erp_side(kind: str) -> AsyncIterator[ErpSide]:
    if kind == "generic_rest":
        async with SandboxServer(token=GENERIC_TOKEN, api_user=GENERIC_API_USER) as server:
            yield GenericSide(server)
        return
    async with serve_fake(kind) as served:
        yield _VENDORS[kind](served)
