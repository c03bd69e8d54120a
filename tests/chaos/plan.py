"""What the chaos run sends, and what each ERP record must end as.

Every client has records; each record is created (``sequence`` 1), updated a few times (2, 3, …)
and sometimes deleted (the next sequence), its name carrying its sequence ("acme-r3 v4"). CW
publishes a client's events in order, per record in sequence order, the records' events
interleaved at random.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from dataclasses import dataclass, field
from typing import Any

T0 = dt.datetime(2026, 11, 23, 10, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Size:
    clients: int
    records: int  # per client
    updates: tuple[int, int] = (1, 4)  # per record, inclusive
    delete_rate: float = 0.25

    @property
    def name(self) -> str:
        return f"{self.clients}x{self.records}"


@dataclass
class Plan:
    events: list[dict[str, Any]] = field(default_factory=list)
    final: dict[str, tuple[int, str | None]] = field(default_factory=dict)
    """``customer/<cw id>`` → (last sequence, final name or None when deleted)."""

    def bodies(self) -> list[tuple[str, str, bytes]]:
        """(transport message id, session = client, body) in publishing order."""
        return [(e["id"], e["client_id"], json.dumps(e).encode()) for e in self.events]


def client_name(n: int) -> str:
    return f"chaos{n:03d}"


def value_name(cw_id: str, seq: int) -> str:
    return f"{cw_id} v{seq}"


def sequence_of(name: str) -> int:
    return int(name.rsplit(" v", 1)[1])


def plan(size: Size, seed: int) -> Plan:
    rng = random.Random(seed)
    out = Plan()
    per_client: list[list[dict[str, Any]]] = []
    for c in range(size.clients):
        client = client_name(c)
        records: list[list[dict[str, Any]]] = []
        for r in range(size.records):
            cw_id = f"{client}-r{r}"
            last = 1 + rng.randint(*size.updates)
            deleted = rng.random() < size.delete_rate
            events = [
                _event(client, cw_id, seq, "created" if seq == 1 else "updated") for seq in range(1, last + 1)
            ]
            if deleted:
                events.append(_event(client, cw_id, last + 1, "deleted"))
            out.final[f"customer/{cw_id}"] = (
                last + int(deleted),
                None if deleted else value_name(cw_id, last),
            )
            records.append(events)
        per_client.append(_interleave(records, rng))
    for tick, event in enumerate(_interleave(per_client, rng), 1):
        out.events.append({**event, "occurred_at": (T0 + dt.timedelta(milliseconds=tick)).isoformat()})
    return out


def _event(client: str, cw_id: str, seq: int, action: str) -> dict[str, Any]:
    env: dict[str, Any] = {
        "id": f"{cw_id}-s{seq}",
        "client_id": client,
        "type": f"customer.{action}",
        "source": "frontend",
        "occurred_at": T0.isoformat(),
        "sequence": seq,
    }
    if action == "deleted":
        env["record_id"] = cw_id
    else:
        number = str(1000 + int(cw_id.rsplit("-r", 1)[1]))
        env["data"] = {"id": cw_id, "number": number, "name": value_name(cw_id, seq)}
    return env


def _interleave(lists: list[list[Any]], rng: random.Random) -> list[Any]:
    """Merge ``lists`` at random, keeping each list's own order."""
    queues = [list(reversed(items)) for items in lists if items]
    out: list[Any] = []
    while queues:
        pick = rng.randrange(len(queues))
        out.append(queues[pick].pop())
        if not queues[pick]:
            queues.pop(pick)
    return out
