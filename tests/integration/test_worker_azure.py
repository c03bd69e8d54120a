"""What only Service Bus can do to the worker: a peer dropping the connection mid-batch, and worker
processes killed until MaxDeliveryCount dead-letters the message (the test peer, the real SDK).

Lock renewal during a provider call longer than the lock runs on every bus in test_worker.py.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from config_db.database import make_engine
from config_db.migrate import upgrade
from tests.e2e.cli import Cli, envelope
from tests.integration.buses import LOCK_S, QUEUE
from tests.integration.test_worker import run_until
from tests.integration.test_worker_processes import sandbox_stats
from tests.integration.worker_rig import Rig, env, failure
from tests.servers import serve_sandbox
from tests.servicebus_peer import EntityOptions, ServiceBusPeer

MAX_DELIVERIES = 2


@pytest.mark.parametrize("rig", ["azure", "azure-sessions"], indirect=True)
async def test_connection_dropped_mid_batch_loses_nothing_and_writes_nothing_twice(rig: Rig) -> None:
    assert rig.peer is not None
    rig.sandbox.sandbox._latency_s = 0.1
    expected = {f"customer/{c}-c{n}" for c in ("acme", "globex", "initech") for n in range(6)}
    await rig.publish(*(env(n, c) for n in range(6) for c in ("acme", "globex", "initech")))
    worker = rig.worker(concurrency=6)
    task = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(45):
            while len(await rig.writes()) < 4:
                await asyncio.sleep(0.01)
            assert rig.peer.drop_connections() > 0, "dropped mid-batch"
            while len(await rig.writes()) < len(expected) or rig.peer.active_count(rig.entity):
                assert not task.done()
                await asyncio.sleep(0.05)
    finally:
        worker.stop()
        stats = await asyncio.wait_for(task, 15)
    writes = await rig.writes()
    assert set(writes) == expected, f"no message lost ({stats.counts})"
    assert {k: v for k, v in writes.items() if v != 1} == {}, f"none written twice ({stats.counts})"
    # A message whose completion the drop cut off (lock_lost) comes back at most once and meets the
    # inbox (duplicate) or, if its first attempt had not journalled yet, the ERP's idempotency key.
    assert stats.counts["duplicate"] <= stats.counts["lock_lost"], stats.counts
    assert set(stats.counts) <= {"created", "unchanged", "lock_lost", "duplicate"}, stats.counts
    assert rig.peer.dead_letter_count(rig.entity) == 0, stats.counts


@pytest.mark.parametrize("rig", ["azure", "azure-sessions"], indirect=True)
async def test_another_publishers_binary_map_and_list_properties_survive_a_retry(rig: Rig) -> None:
    """Values the SDK receives but will not send (a retry's copy carries the message's properties)."""
    assert rig.peer is not None
    rig.sandbox.sandbox.failures.append(failure(503, 2))  # both in-process attempts fail: a retry
    foreign = {"blob": b"\xff\x00", "meta": {"a": 1}, "tags": ["x", "y"]}
    rig.peer.send(
        rig.entity,
        json.dumps(env(1)),
        message_id="t-foreign",
        session_id="acme",
        application_properties=foreign,
    )
    stats = await run_until(rig.worker(delays=(0.5,)), lambda s: s.processed == 2)
    assert stats.counts == {"retry": 1, "created": 1}
    assert await rig.writes() == {"customer/acme-c1": 1}
    assert rig.peer.dead_letter_count(rig.entity) == 0


@pytest.fixture
def hanging_erp(background_loop: asyncio.AbstractEventLoop) -> Iterator[str]:
    """The sandbox ERP taking a minute to answer: every push is in flight."""
    with serve_sandbox(background_loop, token="sandbox-token", latency_ms=60_000) as sandbox:
        yield sandbox.base_url


def test_repeated_crashes_mid_push_end_in_max_delivery_count_exceeded(
    tmp_path: Path, hanging_erp: str
) -> None:
    db_url = f"sqlite:///{tmp_path / 'cwi.db'}"
    engine = make_engine(db_url)
    upgrade(engine)
    engine.dispose()
    cli = Cli(db_url)
    cli.provision_directly(hanging_erp, "acme")
    # Two deliveries allowed: each crash costs a worker start-up, and two show the count at work.
    entities = {QUEUE: EntityOptions(max_delivery_count=MAX_DELIVERIES, lock_duration_s=LOCK_S)}
    with ServiceBusPeer(entities=entities) as peer:
        peer.send(QUEUE, json.dumps(envelope(1)), message_id="m1", session_id="acme")
        azure = {
            "CWI_BUS": "azure",
            "CWI_SERVICEBUS_QUEUE": QUEUE,
            "CWI_SERVICEBUS_CONNECTION_STRING": peer.connection_string,
            "CWI_LOCK_DURATION_S": str(LOCK_S),
        }
        for crash in range(1, MAX_DELIVERIES + 1):
            worker = cli.start("run", **azure)
            deadline = time.monotonic() + 30
            while sandbox_stats(hanging_erp)["requests"] < crash:  # the push of delivery `crash`
                assert worker.poll() is None, worker.communicate()[1][-2000:]
                assert time.monotonic() < deadline, "the worker never reached the ERP"
                time.sleep(0.05)
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=10)
            # The connection died with the process; its lock with it (or, at worst, the lock expires).
            while any(m.state == "locked" for m in peer.messages(QUEUE)):
                assert time.monotonic() < deadline + LOCK_S
                time.sleep(0.05)
        assert peer.active_count(QUEUE) == 0
        [letter] = peer.dead_letters(QUEUE)
    assert (letter.message_id, letter.dead_letter_reason) == ("m1", "MaxDeliveryCountExceeded")
    assert sandbox_stats(hanging_erp)["writes"] == {}, "no push ever finished"
