"""Both sides of one client in memory, for tests that drive the real message core: an ERP that
records every value each record received, in order, and a CW that announces every change it
accepts as an event (with its ``sequence``), as the real ones do.

``MemoryErp`` implements the Provider and InboundProvider protocols with the generic REST
interface's semantics (records addressed by CW id, ``PUT`` an upsert, a replayed Idempotency-Key
gets the first answer); it faults the pushes it is told to, before or after applying. ``MemoryCW``
implements the CW port.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from contracts import Action, Entity
from providers.base import (
    CWDraft,
    ExternalRecord,
    OutboundChange,
    PreparedRequest,
    PushResult,
    content_hash,
)
from providers.errors import TransientError
from tests.dispatching import CommittingDispatcher, StaticConnections
from worker.buses.base import Delivery
from worker.cw.port import Written
from worker.db import Database
from worker.messaging.outcomes import Outcome
from worker.messaging.retry import ATTEMPT_PROPERTY, RetryPolicy

CLIENT = "acme"
RECORD = "c1"
POLICY = RetryPolicy(delays=(1.0,), inprocess_attempts=1, base_wait_s=0.0, max_inprocess_wait_s=0.01)
"""One quick attempt, then one delayed retry: every failure shows as an outcome."""
IDENTITY = "cwi"
"""Who our writes are made as in the ERP (``identity()``); a user's changes have another author."""
USER = "erp-user"
FAULTS = ("before", "after", "429")
"""``before``: 503 and nothing applied; ``after``: applied, then 503; ``429``: Retry-After 1 s."""

T0 = dt.datetime(2026, 11, 23, 10, tzinfo=dt.UTC)


@dataclass(frozen=True, slots=True)
class Write:
    """One change an ERP record received: by us (``worker``) or a user; ``value`` None: deleted."""

    by: str
    value: dict[str, Any] | None


@dataclass(slots=True)
class ErpRecord:
    external_id: str
    version: int
    value: dict[str, Any] | None  # None: deleted
    entity: str = "customer"


@dataclass
class MemoryErp:
    """The ERP. ``history[cw_id]``: every write each record received, in order. ``announced``: the
    webhooks the ERP would send (one per change), for the test to deliver when and as often as
    it likes."""

    kind: ClassVar[str] = "generic_rest"

    records: dict[str, ErpRecord] = field(default_factory=dict)
    history: dict[str, list[Write]] = field(default_factory=dict)
    faults: deque[str] = field(default_factory=deque)
    announced: list[dict[str, Any]] = field(default_factory=list)
    _answers: dict[str, PushResult] = field(default_factory=dict)

    # Provider

    async def push(self, change: OutboundChange) -> PushResult:
        fault = self.faults.popleft() if self.faults else None
        if fault == "before":
            raise TransientError("HTTP 503: before applying")
        if fault == "429":
            raise TransientError("HTTP 429: slow down", retry_after=1.0)
        if fault == "nul":  # an ERP's error text with a NUL character in it
            raise TransientError("HTTP 503: upstream said \x00 and stopped")
        answer = self._answers.get(change.idempotency_key)
        if answer is None:
            answer = self._apply(change)
            self._answers[change.idempotency_key] = answer
        if fault == "after":
            raise TransientError("HTTP 503: after applying")
        return answer

    async def check(self) -> str:
        return "memory ERP"

    async def identity(self) -> str | None:
        return IDENTITY

    def preview(self, change: OutboundChange) -> list[PreparedRequest]:
        return []

    # InboundProvider

    async def fetch(self, entity: Entity, external_id: str) -> ExternalRecord | None:
        for record in self.records.values():
            if record.external_id == external_id and record.value is not None:
                return ExternalRecord(external_id, dict(record.value), self.version_text(record.version))
        return None

    def to_cw(self, entity: Entity, value: Mapping[str, Any]) -> CWDraft:
        return CWDraft({k: v for k, v in value.items() if k != "id"})

    # The ERP's own side

    def _apply(self, change: OutboundChange) -> PushResult:
        cw_id = change.cw_id
        record = self.records.get(cw_id)
        if change.action is Action.deleted:
            if record is None or record.value is None:
                return PushResult("deleted", change.known_external_id)  # 404: already gone
            self._write(cw_id, record, None, IDENTITY)
            return PushResult("deleted", record.external_id, self.version_text(record.version))
        assert change.record is not None
        body = change.record.model_dump(mode="json")
        created = record is None or record.value is None
        if record is None:
            record = self.records[cw_id] = ErpRecord(f"X-{cw_id}", 0, None, change.entity.value)
        self._write(cw_id, record, body, IDENTITY)
        outcome = "created" if created else "updated"
        return PushResult(outcome, record.external_id, self.version_text(record.version), content_hash(body))

    def _write(self, cw_id: str, record: ErpRecord, value: dict[str, Any] | None, author: str) -> None:
        action = "deleted" if value is None else ("created" if record.value is None else "updated")
        record.version += 1
        record.value = value
        self.history.setdefault(cw_id, []).append(Write("worker" if author == IDENTITY else "user", value))
        external: dict[str, Any] = {
            "provider": self.kind,
            "external_id": record.external_id,
            "version": self.version_text(record.version),
            "author": author,
        }
        if value is not None:
            external["value"] = dict(value)
        self.announced.append({"type": f"{record.entity}.{action}", "record_id": cw_id, "external": external})

    def user_edit(self, cw_id: str, name: str) -> bool:
        """A user changes the record's name in the ERP; False when it is not there."""
        record = self.records.get(cw_id)
        if record is None or record.value is None:
            return False
        self._write(cw_id, record, {**record.value, "name": name}, USER)
        return True

    def user_delete(self, cw_id: str) -> bool:
        record = self.records.get(cw_id)
        if record is None or record.value is None:
            return False
        self._write(cw_id, record, None, USER)
        return True

    def version_text(self, version: int) -> str:
        """How this ERP writes a record's version: a counter (generic REST, Tripletex)."""
        return str(version)

    def worker_writes(self) -> int:
        return sum(1 for writes in self.history.values() for w in writes if w.by == "worker")


@dataclass(slots=True)
class CWRecord:
    version: int
    value: dict[str, Any] | None  # None: deleted


@dataclass
class MemoryCW:
    """CW. ``events``: what CW announced for the worker's own writes (each change's event, with
    its ``sequence``), for the test to publish when it likes. ``recreated`` lists the records the
    worker created in CW (the model's records are all born in CW: any is a resurrection)."""

    records: dict[str, CWRecord] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    recreated: list[dict[str, Any]] = field(default_factory=list)
    writes: int = 0
    _answers: dict[str, Any] = field(default_factory=dict)
    _events_made: int = 0

    # The CW port (the worker's writes)

    async def fetch(self, client_id: str, entity: Entity, cw_id: str, *, key: str) -> dict[str, Any] | None:
        record = self.records.get(cw_id)
        return None if record is None or record.value is None else dict(record.value)

    async def create(self, client_id: str, entity: Entity, fields: dict[str, Any], *, key: str) -> Written:
        if key in self._answers:
            answer: Written = self._answers[key]
            return answer
        cw_id = f"re-{len(self.recreated) + 1}"
        self.recreated.append({"id": cw_id, **fields})
        self.writes += 1
        self.records[cw_id] = CWRecord(1, {"id": cw_id, **fields})
        self._answers[key] = answer = Written(cw_id, 1)
        return answer

    async def update(
        self, client_id: str, entity: Entity, cw_id: str, fields: dict[str, Any], *, key: str
    ) -> Written | None:
        if key in self._answers:
            answer: Written | None = self._answers[key]
            return answer
        record = self.records.get(cw_id)
        if record is None or record.value is None:
            self._answers[key] = None
            return None
        self.writes += 1
        self.events.append(self.change(cw_id, {"id": cw_id, **fields}))
        self._answers[key] = answer = Written(cw_id, self.records[cw_id].version)
        return answer

    async def delete(self, client_id: str, entity: Entity, cw_id: str, *, key: str) -> bool:
        if key in self._answers:
            existed: bool = self._answers[key]
            return existed
        record = self.records.get(cw_id)
        existed = record is not None and record.value is not None
        if existed:
            self.writes += 1
            self.events.append(self.change(cw_id, None))
        self._answers[key] = existed
        return existed

    # CW's own side

    def change(self, cw_id: str, value: dict[str, Any] | None) -> dict[str, Any]:
        """A change in CW (a user's, or the worker's write): the record's next version, and the
        event CW publishes for it (an envelope, as JSON)."""
        record = self.records.get(cw_id)
        action = "deleted" if value is None else ("created" if record is None else "updated")
        if record is None:
            record = self.records[cw_id] = CWRecord(0, None)
        record.version += 1
        record.value = value
        self._events_made += 1
        env: dict[str, Any] = {
            "id": f"cw-{cw_id}-{record.version}",
            "client_id": CLIENT,
            "type": f"customer.{action}",
            "source": "frontend",
            "occurred_at": (T0 + dt.timedelta(seconds=self._events_made)).isoformat(),
            "sequence": record.version,
        }
        if value is None:
            env["record_id"] = cw_id
        else:
            env["data"] = dict(value)
        return env

    def value(self, cw_id: str) -> dict[str, Any] | None:
        record = self.records.get(cw_id)
        return None if record is None else record.value


def webhook_envelope(announced: Mapping[str, Any], n: int) -> dict[str, Any]:
    """The envelope our webhook listener would publish for one announced ERP change."""
    return {
        "id": f"wh-{n}",
        "client_id": CLIENT,
        "type": announced["type"],
        "source": "webhook",
        "occurred_at": (T0 + dt.timedelta(seconds=n)).isoformat(),
        "record_id": announced["record_id"],
        "external": dict(announced["external"]),
    }


def body(env: Mapping[str, Any]) -> bytes:
    return json.dumps(env).encode()


def fields_of(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A record's fields without its id and its empty ones (what both sides must agree on)."""
    return None if value is None else {k: v for k, v in value.items() if k != "id" and v is not None}


class Sides:
    """The message core between an ERP and a CW in memory, its journals committed at once (what
    the runner does with each settlement): for tests that play one interleaving by hand."""

    def __init__(self, db: Database, erp: MemoryErp | None = None) -> None:
        self.db = db
        self.erp = erp if erp is not None else MemoryErp()
        self.cw = MemoryCW()
        self.core = CommittingDispatcher(db, StaticConnections(self.erp), POLICY, cw=self.cw, busy_wait_s=0.0)
        self._transport = 0

    async def handle(self, env: dict[str, Any], attempt: int = 0) -> Outcome:
        self._transport += 1
        props = {ATTEMPT_PROPERTY: attempt} if attempt else {}
        delivery = Delivery(body(env), f"t{self._transport}", 1, dt.datetime.now(dt.UTC), CLIENT, props, None)
        return await self.core.handle(delivery)

    async def handle_retry(self, env: dict[str, Any]) -> Outcome:
        """The delayed retry of ``env`` (the policy allows one): its last chance."""
        return await self.handle(env, attempt=1)

    def cw_change(self, name: str | None, cw_id: str = RECORD) -> dict[str, Any]:
        value = None if name is None else {"id": cw_id, "number": "1001", "name": name}
        return self.cw.change(cw_id, value)

    def webhook(self, index: int, *, anonymous: bool = False) -> dict[str, Any]:
        """The envelope of the ERP's ``index``-th webhook; ``anonymous``: without its author."""
        env = webhook_envelope(self.erp.announced[index], index + 1)
        if anonymous:
            env["external"].pop("author", None)
        return env

    def erp_value(self, cw_id: str = RECORD) -> dict[str, Any] | None:
        record = self.erp.records.get(cw_id)
        return None if record is None else fields_of(record.value)
