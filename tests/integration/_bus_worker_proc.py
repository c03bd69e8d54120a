"""One competing consumer for test_local_bus_sessions's multi-process test.

Usage: ``_bus_worker_proc.py <db_url> <out_file>``. Touches ``<out_file>.ready`` once connected,
waits for ``<out_file>.go``, then receives and completes until the queue is empty, writing one
JSON line per message: what it was, when it was received (after the lock committed), when its
completion began (before the delete committed), and how many earlier messages of its session
were still in the queue when it arrived (must be 0 if sessions are kept in order).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import text

from config_db.database import make_engine
from worker.buses.base import Delivery
from worker.buses.local import LocalBus
from worker.db import Database

GIVE_UP_S = 60.0
EARLIER_ACTIVE = text(
    "SELECT count(*) FROM bus_messages WHERE queue = :queue AND session_id = :session "
    "AND seq < :seq AND state = 'active'"
)


async def handle(bus: LocalBus, db: Database, delivery: Delivery) -> dict[str, Any]:
    received_ns = time.monotonic_ns()
    seq = delivery.lock[0]
    params = {"queue": bus.queue, "session": delivery.session_id, "seq": seq}
    earlier = await db.run(lambda conn: conn.execute(EARLIER_ACTIVE, params).scalar_one())
    await asyncio.sleep(random.uniform(0, 0.003))  # widen the window in which a mistake would show
    completing_ns = time.monotonic_ns()
    await bus.complete(delivery)
    return {
        **json.loads(delivery.body),
        "seq": seq,
        "pid": os.getpid(),
        "delivery_count": delivery.delivery_count,
        "earlier_active": earlier,
        "received_ns": received_ns,
        "completing_ns": completing_ns,
    }


async def drain(bus: LocalBus, db: Database) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    give_up = time.monotonic() + GIVE_UP_S
    while time.monotonic() < give_up:
        got = await bus.receive(8, wait_s=0.2)
        if got:
            records += await asyncio.gather(*(handle(bus, db, d) for d in got))
            continue
        stats = await bus.stats()
        if stats.active + stats.locked + stats.scheduled == 0:
            return records
    raise SystemExit(f"queue not drained within {GIVE_UP_S} s")


async def main(db_url: str, out_file: str) -> None:
    db = Database(make_engine(db_url, pool_size=4))
    bus = LocalBus(db, lock_duration_s=30)
    await bus.stats()  # connected
    Path(out_file + ".ready").touch()
    go = Path(out_file + ".go")
    while not go.exists():
        await asyncio.sleep(0.01)
    try:
        records = await drain(bus, db)
    finally:
        await db.close()
    Path(out_file).write_text("".join(json.dumps(r) + "\n" for r in records))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
