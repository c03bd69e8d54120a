"""The local bus on real SQLite and PostgreSQL: sessions (one message of a session at a time, in
order), both receive queries choosing the same messages, and competing worker processes on
PostgreSQL (``_bus_worker_proc.py``). The rest of its semantics: ``test_local_bus.py``."""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Connection

from config_db.database import make_engine
from config_db.models import metadata
from tests.integration.local_bus_rig import (
    LOCK_S,
    FakeClock,
    bus,
    clock,
    db,
    message,
    receive_ids,
    receive_one,
)
from worker.buses.local import LocalBus
from worker.buses.local_sql import lock_messages, lock_size, ready_statement, select_ready_filtered
from worker.db import Database

WORKER_PROC = Path(__file__).with_name("_bus_worker_proc.py")

__all__ = ["bus", "clock", "db"]  # the fixtures


# --- sessions -----------------------------------------------------------------------------------


async def test_a_session_hands_out_one_message_at_a_time_in_order(bus: LocalBus) -> None:
    await bus.publish(
        [message("a1", "a"), message("a2", "a"), message("b1", "b"), message("n1"), message("n2")]
    )

    first = await bus.receive(10, 0)

    assert [d.message_id for d in first] == ["a1", "b1", "n1", "n2"]
    assert await bus.receive(10, 0) == []
    await bus.complete(first[1])  # b1: nothing follows in session b
    assert await bus.receive(10, 0) == []
    await bus.complete(first[0])
    assert await receive_ids(bus) == ["a2"]


async def test_an_expired_head_comes_back_before_its_successor(bus: LocalBus, clock: FakeClock) -> None:
    await bus.publish([message("a1", "a"), message("a2", "a")])
    await receive_one(bus)
    clock.advance(LOCK_S + 1)

    assert await receive_ids(bus) == ["a1"]


async def test_a_locked_message_blocks_an_earlier_one_of_its_session_that_became_visible(
    db: Database, clock: FakeClock
) -> None:
    bus = LocalBus(db, lock_duration_s=300, clock=clock)
    await bus.publish([message("a1", "a", scheduled_at=clock.in_(60)), message("a2", "a")])
    a2 = await receive_one(bus)
    clock.advance(61)

    assert await bus.receive(10, 0) == []
    await bus.complete(a2)
    assert await receive_ids(bus) == ["a1"]


async def test_receive_honours_max_count_in_sequence_order(bus: LocalBus) -> None:
    await bus.publish([message(f"m{i}", f"s{i % 4}" if i % 3 else None) for i in range(12)])

    got = await receive_ids(bus, max_count=3)

    assert got == ["m0", "m1", "m2"]


async def test_queues_are_separate(db: Database, clock: FakeClock) -> None:
    main, other = LocalBus(db, clock=clock), LocalBus(db, queue="other", clock=clock)
    await main.publish([message("m1", "acme")])
    await other.publish([message("o1", "acme")])

    assert await receive_ids(main) == ["m1"]
    assert await receive_ids(other) == ["o1"]
    assert (await other.stats()).locked == 1


# --- the receive queries ------------------------------------------------------------------------


def _chosen_by_both_queries(conn: Connection, params: dict[str, Any]) -> list[list[str]]:
    return [
        [row.message_id for row in conn.execute(build(10), {**params, "b_limit": 10})]
        for build in (ready_statement("sqlite"), select_ready_filtered)
    ]


async def test_both_receive_queries_choose_the_same_messages(
    bus: LocalBus, db: Database, clock: FakeClock
) -> None:
    # Every session situation at once: scheduled heads, locked heads, expired locks, a dead letter
    # at a session's front, a locked message after a due one, sessionless ones, another queue.
    await LocalBus(db, queue="other", clock=clock).publish([message("o1"), message("o2", "a")])
    await bus.publish(
        [
            message("a1", "a"), message("a2", "a"), message("b1", "b", scheduled_at=clock.in_(25)),
            message("b2", "b"), message("c1", "c"), message("c2", "c"), message("d1", "d"),
            message("d2", "d", scheduled_at=clock.in_(90)), message("d3", "d"), message("n1"),
            message("n2", scheduled_at=clock.in_(20)), message("n3"),
        ]
    )  # fmt: skip
    *_, c1 = await bus.receive(3, 0)  # a1, b2 and c1, locked until t=30
    await bus.dead_letter(c1, "MappingError", "x")
    clock.advance(20)
    assert await receive_ids(bus, 2) == ["c2", "d1"]  # locked until t=50
    expected = {
        20: ["n1", "n2", "n3"],
        26: ["n1", "n2", "n3"],  # b1 is due, but b2 still holds its session
        40: ["a1", "b1", "n1", "n2", "n3"],
        95: ["a1", "b1", "c2", "d1", "n1", "n2", "n3"],
    }

    for at, ids in expected.items():
        clock.now = FakeClock.START + at
        params = {"b_queue": bus.queue, "b_now": int(clock() * 1000)}
        assert await db.run(functools.partial(_chosen_by_both_queries, params=params)) == [ids, ids]


# --- competing processes ------------------------------------------------------------------------


async def _publish_sessions(url: str, sessions: int, per_session: int) -> None:
    db = Database(make_engine(url))
    try:
        await LocalBus(db).publish(
            [
                message(f"s{s}-{i}", f"client-{s:02d}", body=json.dumps({"session": s, "index": i}).encode())
                for i, s in itertools.product(range(per_session), range(sessions))
            ]
        )
    finally:
        await db.close()


def _wait_for(paths: list[Path], procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 30
    while not all(p.exists() for p in paths):
        assert all(proc.poll() is None for proc in procs), "a worker process died while starting"
        assert time.monotonic() < deadline, "worker processes did not start"
        time.sleep(0.02)


@pytest.mark.slow
@pytest.mark.postgres
def test_competing_processes_handle_every_message_once_and_keep_session_order(
    postgres_server: str, tmp_path: Path
) -> None:
    engine = make_engine(postgres_server)
    metadata.drop_all(engine)
    metadata.create_all(engine)
    engine.dispose()
    asyncio.run(_publish_sessions(postgres_server, sessions=30, per_session=20))
    outs = [tmp_path / f"worker{n}.jsonl" for n in range(3)]
    procs = [subprocess.Popen([sys.executable, str(WORKER_PROC), postgres_server, str(out)]) for out in outs]
    try:
        _wait_for([Path(f"{out}.ready") for out in outs], procs)
        for out in outs:
            Path(f"{out}.go").touch()
        assert [proc.wait(timeout=60) for proc in procs] == [0, 0, 0]
    finally:
        for proc in procs:
            proc.kill()
    records = [json.loads(line) for out in outs for line in out.read_text().splitlines()]

    assert sorted((r["session"], r["index"]) for r in records) == [
        (s, i) for s in range(30) for i in range(20)
    ]
    assert {r["delivery_count"] for r in records} == {1}
    assert len({r["pid"] for r in records}) > 1, "the processes did not compete"
    by_session: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        by_session[record["session"]].append(record)
    for session in by_session.values():
        session.sort(key=lambda r: r["seq"])
        assert [r["index"] for r in session] == list(range(20))
        assert all(r["earlier_active"] == 0 for r in session)
        for before, after in itertools.pairwise(session):
            assert before["completing_ns"] < after["received_ns"]


# --- the receive statements ---------------------------------------------------------------------


@given(count=st.integers(min_value=1, max_value=5000))
def test_a_lock_statement_fits_the_count_and_is_one_of_a_few_sizes(count: int) -> None:
    size = lock_size(count)
    assert count <= size < 2 * count or size == count == 1
    assert size & (size - 1) == 0  # a power of two: 13 sizes up to 4,096


async def test_receives_of_any_count_lock_what_they_return_with_a_few_statements(bus: LocalBus) -> None:
    lock_messages.cache_clear()
    await bus.publish([message(f"n{i}") for i in range(40)])
    got: list[str] = []
    for count in (3, 5, 6, 7, 1, 11, 2):  # 35 messages in receives of 7 different counts
        deliveries = await bus.receive(count, 0)
        assert len(deliveries) == count
        got += [d.message_id for d in deliveries]
        assert (await bus.stats()).locked == len(got)  # the repeated id filling a size locks nothing more
    assert got == [f"n{i}" for i in range(35)]
    assert lock_messages.cache_info().currsize <= 5  # sizes 1, 2, 4, 8, 16 at most
    assert ready_statement(bus._db.engine.dialect.name)(3) is ready_statement(bus._db.engine.dialect.name)(11)
