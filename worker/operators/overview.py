"""The overview: per client and provider, what happened in the last hour and day.

Messages and outcomes from the sync log; dead letters by reason from the bus; the queue's active,
scheduled and locked counts; the last success and failure; the ERP's recent latency (from each
message's ``pending`` to its outcome, in-process retries included) and its 429 answers.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections import Counter, defaultdict
from typing import Any

from sqlalchemy import Connection

from config_db import clients, history, sync_log
from worker.buses.base import Bus, BusStatsUnavailable
from worker.db import Database
from worker.operators.letters import Letter

HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
_DONE = {"created", "updated", "deleted", "unchanged", "inbound", "failed"}


def _iso(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def connection_state(success: dt.datetime | None, failure: dt.datetime | None) -> str:
    """One word per connection: a wrong base URL that never answered is told apart from one that
    worked and fails now (or flaps), and from a healthy one. A failure is a message that failed or
    waits for a retry (an ERP that refuses connections, times out, answers 5xx)."""
    if failure is None:
        return "ok"
    if success is None:
        return "never succeeded"
    return "failing" if failure > success else "ok (failed before)"


def _latency(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    started: dict[tuple[str, str], dt.datetime] = {}
    spans: dict[tuple[str, str], list[float]] = defaultdict(list)
    limited: Counter[tuple[str, str]] = Counter()
    for row in rows:
        key = (str(row["client_id"] or ""), str(row["provider"] or ""))
        message = (key[0], str(row["message_id"]))
        if row["action"] == "pending":
            started[message] = row["at"]
        elif row["action"] in _DONE and message in started:
            spans[key].append((row["at"] - started.pop(message)).total_seconds() * 1000)
        if row["action"] in ("retry", "failed") and "HTTP 429" in str(row["detail"] or ""):
            limited[key] += 1
    out = {}
    for key in spans.keys() | limited.keys():
        ms = sorted(spans.get(key, []))
        out[key] = {
            "latency_ms_median": round(statistics.median(ms)) if ms else None,
            "latency_ms_p95": round(ms[min(len(ms) - 1, int(len(ms) * 0.95))]) if ms else None,
            "rate_limited_429": limited.get(key, 0),
        }
    return out


async def overview(db: Database, bus: Bus, letters: list[Letter]) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)

    def read(conn: Connection) -> dict[str, Any]:
        return {
            "kinds": {c.client_id: c.kind for c in clients.list_connections(conn)},
            "names": dict(clients.list_clients(conn)),
            "hour": history.activity(conn, now - HOUR),
            "day": history.activity(conn, now - DAY),
            "last": sync_log.last_outcomes(conn),
            "timings": history.timings(conn, now - HOUR),
        }

    found = await db.run(read)
    rows: dict[tuple[str, str], dict[str, Any]] = {}

    def row(client_id: str, provider: str) -> dict[str, Any]:
        return rows.setdefault(
            (client_id, provider),
            {
                "client_id": client_id, "name": found["names"].get(client_id, client_id),
                "provider": provider,
                "hour": {}, "day": {}, "messages_hour": 0, "messages_day": 0, "dead_letters": {},
                "last_success": None, "last_failure": None, "state": "no messages yet",
                "latency_ms_median": None,
                "latency_ms_p95": None, "rate_limited_429": 0,
            },
        )  # fmt: skip

    for client_id, kind in found["kinds"].items():
        row(client_id, kind)
    for window in ("hour", "day"):
        for r in found[window]:
            entry = row(str(r["client_id"] or "-"), str(r["provider"] or "-"))
            entry[window][r["action"]] = int(r["n"])
            if r["action"] != "retry":
                entry[f"messages_{window}"] += int(r["n"])
    for r in found["last"]:
        entry = row(str(r["client_id"]), str(r["provider"] or "-"))
        entry["last_success"], entry["last_failure"] = _iso(r["last_success"]), _iso(r["last_failure"])
        entry["state"] = connection_state(r["last_success"], r["last_failure"])
    for (client_id, provider), numbers in _latency(found["timings"]).items():
        row(client_id or "-", provider or "-").update(numbers)
    for letter in letters:
        client_id = letter.client_id or "-"
        entry = row(client_id, found["kinds"].get(client_id, "-"))
        entry["dead_letters"][letter.dead.reason] = entry["dead_letters"].get(letter.dead.reason, 0) + 1
    try:
        st = await bus.stats()
        queue: dict[str, Any] = {
            "active": st.active, "scheduled": st.scheduled, "locked": st.locked,
            "dead_lettered": st.dead_lettered,
        }  # fmt: skip
    except BusStatsUnavailable as exc:
        queue = {"unavailable": str(exc)}
    return {"at": now.isoformat(), "queue": queue, "clients": [rows[k] for k in sorted(rows)]}
