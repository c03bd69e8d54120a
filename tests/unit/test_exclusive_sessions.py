"""The record lease skipped where the bus already runs a record's messages one at a time.

On the local bus a session (= client id) hands out one message at a time, to one receiver: an
outbound message of its own client needs no lease on its first delivery. A redelivery takes the
lease (an earlier delivery may still be at work) and writes as if contested (the safe writes)."""

from __future__ import annotations

import dataclasses
import json
import random

import pytest
from sqlalchemy import Connection, Engine, func, select

from config_db import inbox, sync_log
from config_db.leases import leases
from contracts import parse_envelope
from providers.base import PushResult
from worker.dev import fixtures as fx
from worker.messaging import journal

PROVIDER = "generic_rest"


def _env(seq: int = 1):  # type: ignore[no-untyped-def]
    data = fx.customer("acme", 1, random.Random(1))
    return parse_envelope(json.dumps(fx.envelope("acme", "customer.created", data, seq=seq, sequence=seq)))


def _leases(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(leases)).scalar_one())


def test_a_first_delivery_on_an_exclusive_bus_takes_no_lease_and_journals_plainly(engine: Engine) -> None:
    env = _env()
    with engine.begin() as conn:
        start = journal.begin_outbound(conn, env, PROVIDER, None, lease_ms=1000, ordered=True, exclusive=True)
        assert not start.busy and start.lease is None and not start.contested
        assert _leases(conn) == 0
    pushed = journal.outbound_pushed(env, PROVIDER, PushResult("created", "E1", "1", "h1"), start)
    with engine.begin() as conn:
        pushed(conn)
        assert inbox.finished_outcome(conn, env.client_id, env.id) == "created"
        link = sync_log.get_link(conn, env.client_id, PROVIDER, env.entity.value, env.cw_id)
        assert link is not None and link.external_id == "E1" and link.cw_sequence == 1
    with engine.begin() as conn:  # the same envelope again: a duplicate, still without a lease
        again = journal.begin_outbound(conn, env, PROVIDER, None, lease_ms=1000, ordered=True, exclusive=True)
        assert again.finished == "created" and _leases(conn) == 0


def test_a_redelivery_on_an_exclusive_bus_takes_the_lease_and_writes_as_contested(engine: Engine) -> None:
    env = _env()
    lease = journal.lease_for(env, PROVIDER, "cw", env.cw_id, "transport-1")
    with engine.begin() as conn:
        start = journal.begin_outbound(
            conn, env, PROVIDER, lease, lease_ms=1000, ordered=True, exclusive=True
        )
        assert start.lease == lease and start.contested
        assert _leases(conn) == 1
    # Its earlier delivery (no lease) finished meanwhile: the contested writes neither fail nor double.
    earlier = journal.begin_outbound
    with engine.begin() as conn:
        first = earlier(conn, env, PROVIDER, None, lease_ms=1000, ordered=True, exclusive=True)
    result = PushResult("created", "E1", "1", "h1")
    with engine.begin() as conn:
        journal.outbound_pushed(env, PROVIDER, result, first)(conn)
    with engine.begin() as conn:
        journal.outbound_pushed(env, PROVIDER, result, start)(conn)
        assert _leases(conn) == 0
        assert inbox.finished_outcome(conn, env.client_id, env.id) == "created"
        # One outcome per message in the sync log: the second to finish is journalled as a duplicate.
        actions = conn.execute(
            select(sync_log.log.c.action, sync_log.log.c.detail).order_by(sync_log.log.c.id)
        ).all()
        assert [tuple(row) for row in actions] == [
            ("pending", None),
            ("pending", "recovering: an earlier attempt may have reached the ERP"),
            ("created", None),
            ("duplicate", "already created"),
        ]


@pytest.mark.parametrize("ending", ["unchanged", "superseded"])
def test_a_redelivery_ending_without_a_push_after_its_earlier_delivery_finished_is_a_duplicate(
    engine: Engine, ending: str
) -> None:
    env = _env()
    lease = journal.lease_for(env, PROVIDER, "cw", env.cw_id, "transport-1")
    with engine.begin() as conn:
        first = journal.begin_outbound(conn, env, PROVIDER, None, lease_ms=1000, ordered=True, exclusive=True)
        start = journal.begin_outbound(
            conn, env, PROVIDER, lease, lease_ms=1000, ordered=True, exclusive=True
        )
    with engine.begin() as conn:
        journal.outbound_pushed(env, PROVIDER, PushResult("created", "E1", "1", "h1"), first)(conn)
    if ending == "unchanged":
        late = journal.outbound_unchanged(env, PROVIDER, start, "CW no longer has it")
    else:
        late = journal.outbound_skipped(
            env, PROVIDER, dataclasses.replace(start, skip="superseded", detail="older")
        )
    with engine.begin() as conn:
        late(conn)
        assert _leases(conn) == 0 and inbox.finished_outcome(conn, env.client_id, env.id) == "created"
        log = sync_log.log.c
        actions = [row.action for row in conn.execute(select(log.action).order_by(log.id))]
        assert actions == ["pending", "pending", "created", "duplicate"]


def test_no_lease_is_refused_where_the_bus_does_not_run_records_exclusively(engine: Engine) -> None:
    with engine.begin() as conn, pytest.raises(ValueError, match="lease"):
        journal.begin_outbound(conn, _env(), PROVIDER, None, lease_ms=1000, ordered=True)
