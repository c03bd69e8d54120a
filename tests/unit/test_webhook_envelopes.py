"""The listener's envelopes: one per change, ids stable across redeliveries of the same call."""

from __future__ import annotations

import datetime as dt

from contracts import Action, Entity
from providers.base import InboundChange
from worker.ingress.envelopes import webhook_envelopes

NOW = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC)


def test_one_envelope_per_change_with_stable_ids() -> None:
    changes = [
        InboundChange(Entity.customer, Action.updated, "77", version="3", event_id="ev-1"),
        InboundChange(Entity.invoice, Action.created, "9", value={"id": 9}, cw_id="inv-1"),
    ]
    first = webhook_envelopes("acme", "tripletex", changes, body=b"{}", received_at=NOW)
    again = webhook_envelopes("acme", "tripletex", changes, body=b"{}", received_at=NOW)
    assert [e.id for e in first] == [e.id for e in again]
    assert len({e.id for e in first}) == 2
    assert first[0].type == "customer.updated" and first[0].inbound
    assert first[0].external is not None and first[0].external.version == "3"
    assert (
        first[1].cw_id == "inv-1" and first[1].external is not None and first[1].external.value == {"id": 9}
    )


def test_ids_differ_per_client_and_per_call_without_event_id() -> None:
    change = [InboundChange(Entity.customer, Action.updated, "77")]
    a = webhook_envelopes("acme", "tripletex", change, body=b"one", received_at=NOW)[0].id
    b = webhook_envelopes("beta", "tripletex", change, body=b"one", received_at=NOW)[0].id
    c = webhook_envelopes("acme", "tripletex", change, body=b"two", received_at=NOW)[0].id
    assert len({a, b, c}) == 3
