"""Issue 10, failure 1: a delayed retry keeps per-record order, on every bus (the local bus on SQLite
and PostgreSQL, Service Bus as a queue and with sessions), against the real sandbox ERP.

With sessions (the local bus, Service Bus sessions) the retried message holds its client's later
messages until it is settled; without sessions the later ones go first and the retry, older, is
superseded. Either way the ERP ends with the newest value, and a deleted record stays deleted.
"""

from __future__ import annotations

from typing import Any

from config_db import sync_log
from tests.integration.test_worker import run_until
from tests.integration.worker_rig import Rig, failure
from worker.messaging.runner import RunStats

FINISHED = ("created", "updated", "deleted", "superseded")


def change(seq: int, action: str, name: str | None = None, client: str = "acme") -> dict[str, Any]:
    env: dict[str, Any] = {
        "id": f"{client}-v{seq}",
        "client_id": client,
        "type": f"customer.{action}",
        "source": "frontend",
        "occurred_at": f"2026-11-23T10:00:0{seq}Z",
        "sequence": seq,
    }
    if action == "deleted":
        env["record_id"] = f"{client}-c1"
    else:
        env["data"] = {"id": f"{client}-c1", "number": "1001", "name": name}
    return env


def finished(stats: RunStats, n: int) -> bool:
    return stats.counts["retry"] >= 1 and sum(stats.counts[k] for k in FINISHED) >= n


def actions(rig: Rig, message_id: str) -> list[str]:
    rows = rig.db.run_sync(lambda c: sync_log.entries(c, message_id=message_id))
    return [str(r["action"]) for r in reversed(rows)]


async def test_a_delayed_retry_of_v1_does_not_overwrite_v2(rig: Rig) -> None:
    """Issue: v1 met a 503, was rescheduled behind v2, and overwrote it ("Acme v1")."""
    rig.sandbox.sandbox.failures.append(failure(503, 2))  # both in-process attempts of v1
    await rig.publish(change(1, "created", "Acme v1"), change(2, "updated", "Acme v2"))
    stats = await run_until(rig.worker(delays=(0.3,)), lambda s: finished(s, 2))
    assert not any(k.startswith("dead") for k in stats.counts), stats.counts
    record = rig.sandbox.sandbox.store.get("customer", "acme-c1")
    assert record is not None and record.data["name"] == "Acme v2"
    if rig.orders_by_client:  # v2 waited for v1's retry
        assert actions(rig, "acme-v1") == ["pending", "retry", "pending", "created"]
        assert actions(rig, "acme-v2") == ["pending", "updated"]
    else:  # v2 went first; v1's retry, older, was not pushed
        assert actions(rig, "acme-v1")[-1] == "superseded"
        assert (await rig.writes())["customer/acme-c1"] == 1


async def test_a_deleted_record_is_not_brought_back_by_a_delayed_retry(rig: Rig) -> None:
    """Issue: v1's retry came after the delete and brought the record back (v0,v2,…,D,v1)."""
    rig.sandbox.sandbox.failures.append(failure(503, 2))
    await rig.publish(change(1, "created", "Acme v1"), change(2, "updated", "Acme v2"), change(3, "deleted"))
    stats = await run_until(rig.worker(delays=(0.3,)), lambda s: finished(s, 3))
    assert not any(k.startswith("dead") for k in stats.counts), stats.counts
    record = rig.sandbox.sandbox.store.get("customer", "acme-c1")
    assert record is None or record.deleted, f"brought back: {record}"
    assert await rig.waiting() == 0
