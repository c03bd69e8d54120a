"""The worker's handler with the webhooks publisher around it (as ``ValueRecorder`` wraps it).

A message whose transport property says ``webhook.delivery`` is one delivery attempt: the
``Deliverer`` handles it. Any other goes to the inner handler (the dispatcher); when it completes
having carried a CW change through (``Complete.changed``: pushed to the ERP, or an ERP change
written to CW), one delivery per matching subscription is added to its journal: the delivery-log
rows and the first attempt's messages, published through the outbox (in the settlement's own
transaction on the local bus, before the completion on Service Bus). The ERP path never waits for
a subscriber: its settlement only writes rows and messages.

Redeliveries, duplicates, superseded events and echoes are not published again: only an outcome
that carried a change has ``changed``; a delivery's id derives from the subscription and the
envelope id, so the same event is one delivery however often its message is handled.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import Connection

from config_db import deliveries
from worker.buses.base import Delivery
from worker.db import Database
from worker.messaging.outcomes import Changed, Complete, Outcome
from worker.messaging.runner import Handler
from worker.publisher import messages
from worker.publisher.deliver import Deliverer
from worker.publisher.directory import Directory
from worker.publisher.events import payload
from worker.publisher.messages import DeliveryMessage
from worker.publisher.outbox import Outbox, chain


class Publisher:
    def __init__(self, inner: Handler, deliverer: Deliverer, directory: Directory, outbox: Outbox) -> None:
        self._inner = inner
        self._deliverer = deliverer
        self._directory = directory
        self._outbox = outbox
        self.db: Database = inner.db

    async def handle(self, delivery: Delivery) -> Outcome:
        if delivery.properties.get(messages.KIND_PROPERTY) == messages.KIND:
            return await self._deliverer.handle(delivery)
        outcome = await self._inner.handle(delivery)
        if isinstance(outcome, Complete) and outcome.changed is not None:
            return await self._fan_out(outcome, outcome.changed)
        return outcome

    async def _fan_out(self, outcome: Complete, changed: Changed) -> Outcome:
        env = changed.envelope
        targets = await self._directory.matching(env.client_id, env.type)
        if not targets:
            return outcome
        now = dt.datetime.now(dt.UTC)
        found = [
            DeliveryMessage(
                id=messages.delivery_id(target.id, env.id),
                client_id=env.client_id,
                subscription_id=target.id,
                event_id=env.id,
                event_type=env.type,
                entity=env.entity.value,
                record_id=changed.cw_id,
                payload=payload(changed, target.fields),
                created_at=now,
            )
            for target in targets
        ]

        def rows(conn: Connection) -> None:
            for message in found:
                deliveries.insert_if_absent(conn, message.row())

        journal = await self._outbox.with_messages(
            [messages.first(m) for m in found], chain(outcome.journal, rows)
        )
        return dataclasses.replace(outcome, journal=journal)
