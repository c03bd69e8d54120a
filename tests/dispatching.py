"""The message core as unit tests drive it: a dispatcher whose outcomes' journals are committed at
once (what the runner does with the settlement), over a fixed provider."""

from __future__ import annotations

from typing import Any

from contracts import DeadLetterReason
from providers.base import ConnectionSpec
from providers.errors import PermanentError
from worker.buses.base import Delivery
from worker.messaging.connections import ErpConnection
from worker.messaging.dispatch import Dispatcher
from worker.messaging.outcomes import Outcome


class StaticConnections:
    """Every client's connection is ``provider``; client ``ghost`` has none."""

    def __init__(self, provider: Any, *, settings: dict[str, str] | None = None) -> None:
        self.provider = provider
        self._settings = settings or {}
        self._connections: dict[str, ErpConnection] = {}

    async def connection_for(self, client_id: str) -> ErpConnection:
        if client_id == "ghost":
            raise PermanentError("no connection for 'ghost'", reason=DeadLetterReason.UnknownClient)
        if client_id not in self._connections:
            spec = ConnectionSpec(client_id, self.provider.kind, "http://erp.test", self._settings)
            self._connections[client_id] = ErpConnection(spec, self.provider)
        return self._connections[client_id]


class CommittingDispatcher(Dispatcher):
    async def handle(self, delivery: Delivery) -> Outcome:
        outcome = await super().handle(delivery)
        if outcome.journal is not None:
            await self.db.batched(outcome.journal)
        return outcome
