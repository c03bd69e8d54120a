"""One conformance run: its options, the records it writes, and the order of the checks."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

from contracts.interface import ENTITIES, load_document
from worker.conformance.client import Document, KitClient
from worker.conformance.report import Exchange

MAX_EXAMPLES = 1000
"""Generated cases per operation and phase, at most: a thousand already takes the better part of an hour."""


@dataclass(frozen=True, slots=True)
class Options:
    url: str
    token: str
    entities: Sequence[str] = ENTITIES
    #: generated cases per operation and phase for the schema-driven part (0: skip it).
    examples: int = 20
    seed: int | None = None
    #: where the kit listens for the ERP's webhooks (``host:port``), and the secret to verify them.
    webhook_listen: str | None = None
    webhook_secret: str | None = None
    webhook_wait_s: float = 5.0
    #: called with the listener's URL once it listens (tests subscribe the sandbox with it).
    on_webhook_url: Callable[[str], Awaitable[None]] | None = None
    burst: int = 30

    def __post_init__(self) -> None:
        if not 0 <= self.examples <= MAX_EXAMPLES:
            raise ValueError(f"examples must be a whole number from 0 to {MAX_EXAMPLES}, not {self.examples}")


@dataclass(slots=True)
class Written:
    """A change the kit made: what the webhook of it must say."""

    entity: str
    cw_id: str
    version: int
    action: str


class Kit:
    """The state of one run, shared by the checks."""

    def __init__(self, options: Options, session: aiohttp.ClientSession) -> None:
        self.options = options
        self.document = Document(load_document())
        self.client = KitClient(session, options.url, options.token, self.document)
        self.run_id = uuid.uuid4().hex[:8]
        self.subject: str | None = None
        self.written: list[Written] = []
        self._numbers = 0
        self.parents: dict[str, str] = {}

    def cw_id(self, label: str) -> str:
        return f"cwi-conformance-{self.run_id}-{label}"

    def key(self) -> str:
        return f"cwi-conformance-{uuid.uuid4()}"

    def record(self, entity: str, cw_id: str) -> dict[str, Any]:
        """The document's example record of ``entity``, as a new record of this run."""
        operation = self.document.document["paths"][f"/v1/{entity}/{{cw_id}}"]["put"]
        example = operation["requestBody"]["content"]["application/json"]["example"]
        body: dict[str, Any] = copy.deepcopy(example)
        self._numbers += 1
        body["id"] = cw_id
        body["number"] = f"CWC-{self.run_id}-{self._numbers}"
        if entity in ("project", "invoice"):
            body["customer_id"] = self.parents.get("customer", body["customer_id"])
            body["customer_number"] = self.parents.get("customer_number", body.get("customer_number"))
        if entity == "invoice":
            body["project_id"] = self.parents.get("project", body.get("project_id"))
            body["project_number"] = self.parents.get("project_number", body.get("project_number"))
        return body

    @staticmethod
    def changed(body: dict[str, Any]) -> dict[str, Any]:
        """The same record with one field changed (an update)."""
        return {**body, "number": body["number"] + "-2"}

    async def put(self, entity: str, cw_id: str, body: Any, *, key: str | None = None) -> Exchange:
        exchange = await self.client.call(
            "PUT", _path(entity, cw_id), f"/v1/{entity}/{{cw_id}}", body=body, key=key or self.key()
        )
        self._note(entity, cw_id, exchange, "updated" if exchange.status == 200 else "created")
        return exchange

    async def get(self, entity: str, cw_id: str) -> Exchange:
        return await self.client.call("GET", _path(entity, cw_id), f"/v1/{entity}/{{cw_id}}")

    async def delete(self, entity: str, cw_id: str, *, key: str | None = None) -> Exchange:
        exchange = await self.client.call(
            "DELETE", _path(entity, cw_id), f"/v1/{entity}/{{cw_id}}", key=key or self.key()
        )
        if exchange.status == 204:
            self.written.append(Written(entity, cw_id, -1, "deleted"))
        return exchange

    async def version(self, entity: str, cw_id: str) -> int | None:
        answer = (await self.get(entity, cw_id)).json()
        version = answer.get("version") if isinstance(answer, dict) else None
        return version if isinstance(version, int) else None

    def _note(self, entity: str, cw_id: str, exchange: Exchange, action: str) -> None:
        answer = exchange.json()
        version = answer.get("version") if isinstance(answer, dict) else None
        if exchange.status in (200, 201) and isinstance(version, int):
            self.written.append(Written(entity, cw_id, version, action))

    async def prepare_parents(self) -> None:
        """A customer and a project for the projects and invoices of the run to refer to."""
        customer = self.cw_id("parent-customer")
        body = self.record("customer", customer)
        await self.put("customer", customer, body)
        self.parents.update(customer=customer, customer_number=body["number"])
        project = self.cw_id("parent-project")
        body = self.record("project", project)
        await self.put("project", project, body)
        self.parents.update(project=project, project_number=body["number"])


def _path(entity: str, cw_id: str) -> str:
    return f"/v1/{entity}/{quote(cw_id, safe='')}"
