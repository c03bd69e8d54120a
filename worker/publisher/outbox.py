"""Publishing messages together with database writes, on either bus.

On a bus that lives in the database (the local bus) the messages are inserted in the writes' own
transaction: both or neither. On Service Bus they are published first and the writes committed
after: a crash in between leaves a message whose writes are missing, which its handler tolerates
(every delivery message carries its whole delivery-log row) or ignores (a stale attempt number).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from sqlalchemy import Connection

from worker.buses.base import Bus, OutgoingMessage
from worker.db import Database, Journal


@runtime_checkable
class PublishesInTransaction(Protocol):
    def publish_in(self, conn: Connection, messages: Sequence[OutgoingMessage]) -> None: ...


def chain(*journals: Journal | None) -> Journal | None:
    """One journal running each given one in turn (None when there is none)."""
    steps = [j for j in journals if j is not None]
    if not steps:
        return None
    if len(steps) == 1:
        return steps[0]

    def journal(conn: Connection) -> None:
        for step in steps:
            step(conn)

    return journal


class Outbox:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def with_messages(
        self, messages: Sequence[OutgoingMessage], journal: Journal | None
    ) -> Journal | None:
        """The journal to commit (with a settlement, or by ``commit``) so that ``messages`` are
        published with it: inside it on the local bus, or now, before it, on Service Bus."""
        if not messages:
            return journal
        bus = self.bus
        if isinstance(bus, PublishesInTransaction):

            def publishing(conn: Connection) -> None:
                bus.publish_in(conn, messages)

            return chain(journal, publishing)
        await bus.publish(messages)
        return journal

    async def commit(self, db: Database, messages: Sequence[OutgoingMessage], journal: Journal) -> None:
        """Commit ``journal`` with ``messages`` published (an operator's act: no settlement)."""
        combined = await self.with_messages(messages, journal)
        assert combined is not None
        await db.run(combined)
