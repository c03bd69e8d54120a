"""A session's messages are held by the session's lock, which runs from the session's last renewal,
not from when the worker takes the message: one that waited to be handed out says so
(``Delivery.lock_expires``), and the worker's lock keeper renews it at once."""

from __future__ import annotations

import asyncio
import time

from tests.integration.buses import LOCK_S, SESSION_QUEUE, azure_bus
from tests.servicebus_peer import ServiceBusPeer


async def test_a_sessions_message_that_waited_to_be_handed_out_has_less_lock_left(
    peer: ServiceBusPeer,
) -> None:
    for n in (1, 2):
        peer.send(SESSION_QUEUE, f'{{"n": {n}}}', message_id=f"m{n}", session_id="acme")
    bus = azure_bus(peer.connection_string, SESSION_QUEUE, sessions=True, lock_s=LOCK_S)
    await bus.open()
    try:
        [first] = await bus.receive(1, 5.0)
        await bus.complete(first)  # the session fetches its next message, its lock fresh
        waited = LOCK_S * 0.6  # the worker's slots were all busy meanwhile
        await asyncio.sleep(waited)
        [second] = await bus.receive(1, 5.0)
        handed_out = time.monotonic()
        assert second.message_id == "m2"
        # Reckoned from the hand-out, the keeper renewed it half a lock later: after the lock ended.
        assert second.lock_expires is not None
        assert second.lock_expires - handed_out <= LOCK_S - waited + 0.05, "less than half a lock left"
        await bus.renew_lock(second)
        await bus.complete(second)
    finally:
        await bus.close()
    assert peer.active_count(SESSION_QUEUE) == 0
