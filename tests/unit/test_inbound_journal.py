"""The inbound journal when two deliveries of one webhook's message run at once (the first one's
leases ran out while it worked, and a redelivery took them over): one outcome, then a duplicate."""

from __future__ import annotations

import json
import time

from sqlalchemy import Engine, select

from config_db import inbox, marks, sync_log
from config_db.marks import Mark
from contracts import Envelope, parse_envelope
from worker.messaging import inbound_journal as ij

PROVIDER = "generic_rest"


def _env() -> Envelope:
    body = {
        "id": "w-1",
        "client_id": "acme",
        "type": "customer.updated",
        "source": "webhook",
        "occurred_at": "2026-11-23T10:00:00Z",
        "external": {"provider": PROVIDER, "external_id": "E-1", "version": "2"},
    }
    return parse_envelope(json.dumps(body))


def test_a_delivery_finishing_after_another_delivery_of_its_message_is_a_duplicate(engine: Engine) -> None:
    env = _env()
    with engine.begin() as conn:
        first = ij.begin_inbound(conn, env, PROVIDER, "transport-1", lease_ms=1)
    time.sleep(0.01)  # the first delivery's leases run out; the redelivery takes them over
    with engine.begin() as conn:
        second = ij.begin_inbound(conn, env, PROVIDER, "transport-2", lease_ms=60_000)
    assert not first.busy and not second.busy and second.finished is None
    link = sync_log.Link("E-1", "2", "h2", False)
    result = ij.InboundResult("inbound", "c-1", link=link, applied=(Mark("version", "2"),), cw_mark="fp")

    with engine.begin() as conn:
        ij.inbound_finished(env, PROVIDER, second, result)(conn)
    with engine.begin() as conn:
        ij.inbound_finished(env, PROVIDER, first, result)(conn)

    with engine.begin() as conn:
        assert inbox.finished_outcome(conn, "acme", "w-1") == "inbound"
        log = sync_log.log.c
        rows = conn.execute(select(log.action, log.detail).order_by(log.id)).all()
        assert [tuple(row) for row in rows] == [
            ("pending", None),
            ("pending", None),
            ("inbound", None),
            ("duplicate", "already inbound"),
        ]
        kept = conn.execute(select(marks.marks.c.kind, marks.marks.c.value).order_by(marks.marks.c.id)).all()
        assert [tuple(row) for row in kept] == [("fingerprint", "fp"), ("version", "2")]  # not twice
