"""The pipeline's inbound dispatch and failure handling, with an in-memory CW port and provider
(the sync log is real: in-memory SQLite). The real HTTP path is tests/integration/test_inbound.py."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any, ClassVar

from config_db import sync_log
from contracts import DeadLetterReason, Entity
from providers.base import CWDraft, ExternalRecord, OutboundChange, PreparedRequest, PushResult
from providers.errors import ProviderRejected, TransientError
from tests.dispatching import CommittingDispatcher as Pipeline
from tests.dispatching import StaticConnections
from worker.buses.base import Delivery
from worker.cw.port import Written
from worker.db import Database
from worker.messaging.outcomes import Complete, DeadLetter, Retry
from worker.messaging.retry import RetryPolicy


class MemoryCW:
    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}
        self.fail: Exception | None = None

    async def fetch(self, client_id: str, entity: Entity, cw_id: str, *, key: str) -> dict[str, Any] | None:
        return self.records.get(cw_id)

    async def create(self, client_id: str, entity: Entity, fields: dict[str, Any], *, key: str) -> Written:
        if self.fail is not None:
            raise self.fail
        cw_id = f"cw-{len(self.records) + 1}"
        self.records[cw_id] = {**fields, "id": cw_id}
        return Written(cw_id, 1)

    async def update(
        self, client_id: str, entity: Entity, cw_id: str, fields: dict[str, Any], *, key: str
    ) -> Written | None:
        if cw_id not in self.records:
            return None
        self.records[cw_id] = {**fields, "id": cw_id}
        return Written(cw_id, None)

    async def delete(self, client_id: str, entity: Entity, cw_id: str, *, key: str) -> bool:
        return self.records.pop(cw_id, None) is not None


class ErpProvider:
    kind: ClassVar[str] = "generic_rest"

    def __init__(self) -> None:
        self.current: dict[str, ExternalRecord] = {}
        self.pushed: list[OutboundChange] = []

    async def push(self, change: OutboundChange) -> PushResult:
        self.pushed.append(change)
        return PushResult("updated", "E-1", "9", "h9")

    async def check(self) -> str:
        return "ok"

    def preview(self, change: OutboundChange) -> list[PreparedRequest]:
        return []

    async def fetch(self, entity: Entity, external_id: str) -> ExternalRecord | None:
        return self.current.get(external_id)

    def to_cw(self, entity: Entity, value: Mapping[str, Any]) -> CWDraft:
        return CWDraft({k: v for k, v in value.items() if k != "id"})


POLICY = RetryPolicy(delays=(60,), inprocess_attempts=2, base_wait_s=0.001)


def webhook(env_id: str, *, value: dict[str, Any] | None = None, action: str = "updated") -> Delivery:
    external: dict[str, Any] = {"provider": "generic_rest", "external_id": "E-1", "version": "2"}
    if value is not None:
        external["value"] = value
    body = {
        "id": env_id,
        "client_id": "acme",
        "type": f"customer.{action}",
        "source": "webhook",
        "occurred_at": "2026-11-23T10:00:00Z",
        "external": external,
    }
    return Delivery(json.dumps(body).encode(), "t-" + env_id, 1, dt.datetime.now(dt.UTC), "acme", {}, None)


def thin(env_id: str) -> Delivery:
    body = {
        "id": env_id,
        "client_id": "acme",
        "type": "customer.updated",
        "source": "frontend",
        "occurred_at": "2026-11-23T10:00:00Z",
        "record_id": "cw-1",
    }
    return Delivery(json.dumps(body).encode(), "t-" + env_id, 1, dt.datetime.now(dt.UTC), "acme", {}, None)


RECORD = {"number": "1", "name": "Acme AS"}


async def test_without_cws_apis_webhook_and_thin_events_dead_letter_not_supported(db: Database) -> None:
    pipeline = Pipeline(db, StaticConnections(ErpProvider()), POLICY)
    for delivery in (webhook("w1", value=RECORD), thin("t1")):
        outcome = await pipeline.handle(delivery)
        assert isinstance(outcome, DeadLetter) and outcome.reason is DeadLetterReason.NotSupported
        assert "CWI_CW_GRAPHQL_URL" in outcome.description


def pipeline_with(db: Database, cw: MemoryCW, provider: ErpProvider) -> Pipeline:
    return Pipeline(db, StaticConnections(provider), POLICY, cw=cw)


async def test_a_thin_webhook_is_fetched_and_a_vanished_record_is_a_delete(db: Database) -> None:
    cw, provider = MemoryCW(), ErpProvider()
    pipeline = pipeline_with(db, cw, provider)
    provider.current["E-1"] = ExternalRecord("E-1", RECORD, "2", "kari")
    assert await pipeline.handle(webhook("w1")) == Complete("inbound")
    assert cw.records["cw-1"]["name"] == "Acme AS"
    provider.current.clear()
    assert await pipeline.handle(webhook("w2")) == Complete("inbound")
    assert cw.records == {}
    link = db.run_sync(lambda c: sync_log.get_link(c, "acme", "generic_rest", "customer", "cw-1"))
    assert link is not None and link.deleted


async def test_cw_failures_retry_or_dead_letter_with_cws_text(db: Database) -> None:
    cw, provider = MemoryCW(), ErpProvider()
    provider.current["E-1"] = ExternalRecord("E-1", RECORD, "2", "kari")  # what the webhook reports
    pipeline = pipeline_with(db, cw, provider)
    cw.fail = TransientError("CW create customer: HTTP 503: busy")
    outcome = await pipeline.handle(webhook("w1", value=RECORD))
    assert isinstance(outcome, Retry) and outcome.delay_s == 60
    cw.fail = ProviderRejected("CW create customer: HTTP 422: name: too long")
    outcome = await pipeline.handle(webhook("w1", value=RECORD))
    assert outcome == DeadLetter(
        DeadLetterReason.ProviderRejected, "CW create customer: HTTP 422: name: too long"
    )
    actions = [r["action"] for r in db.run_sync(lambda c: sync_log.entries(c, message_id="w1"))]
    assert actions == ["failed", "pending", "retry", "pending"]


async def test_a_thin_event_whose_record_left_cw_pushes_nothing(db: Database) -> None:
    cw, provider = MemoryCW(), ErpProvider()
    assert await pipeline_with(db, cw, provider).handle(thin("t1")) == Complete("unchanged")
    assert provider.pushed == []
