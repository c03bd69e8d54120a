"""One settler per receiver: settlements and lock renewals queued, done by one task, never while a
receive waits on the same link.

Why: with the async SDK every settlement waits for the service's echo by reading the connection
itself, one frame at a time under the transport's socket lock. Settlements awaited by many tasks
while a ``receive_messages`` call holds that lock queue behind its reads (each up to the socket
timeout), and are settled about twenty times slower than the same settlements made by one task
between receives (bench/sb_bare.py). So the runner's tasks only queue their settlement and await
its result; the receiver's pump (``QueueReceiving``) drains the queue between receives.

A batch's completions go out together and their echoes are awaited together (``pipelined``, below
the SDK's public API, with the SDK's own per-message error mapping), after the pump's next receive
when it has one to make; every other settlement goes through the public API.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from azure.servicebus.aio import ServiceBusReceiver

from worker.buses.azure import pipelined
from worker.buses.azure.convert import Message

Action = Callable[[ServiceBusReceiver, Message], Awaitable[None]]
Landing = Callable[[], Awaitable[int]]


@dataclass(eq=False)
class Settlement:
    receiver: ServiceBusReceiver
    message: Message
    action: Action | None  # None: complete (batched)
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Settler:
    """The queue of a receiver's settlements; ``drain`` runs them (called by the receiver's pump)."""

    def __init__(self) -> None:
        self._queue: list[Settlement] = []
        self.queued = asyncio.Event()

    def __len__(self) -> int:
        return len(self._queue)

    async def submit(self, receiver: ServiceBusReceiver, message: Message, action: Action | None) -> None:
        """Queue the settlement and wait for its result (the SDK's error, if any, is raised here)."""
        item = Settlement(receiver, message, action)
        self._queue.append(item)
        self.queued.set()
        await asyncio.shield(item.done)  # a cancelled caller does not cancel a settlement under way

    async def drain(self) -> int:
        """Run every queued settlement; returns how many. Never raises: results go to the futures."""
        return await (await self.send())()

    async def send(self) -> Landing:
        """Run every queued settlement, the completions only sent: the returned call awaits their
        echoes, hands out every outcome and returns how many settlements there were. A receive
        between the two reads the echoes along with its messages (one round trip a pump cycle
        instead of two). Never raises: results go to the futures."""
        items, self._queue = self._queue, []
        self.queued.clear()
        completes = [i for i in items if i.action is None]
        others = [i for i in items if i.action is not None]
        flights = await _send_completions(completes) if completes else []
        for item in others:
            assert item.action is not None
            await _run(item, item.action)

        async def land() -> int:
            for batch, sent in flights:
                for item, outcome in zip(batch, await sent.confirm(), strict=True):
                    _resolve(item, outcome)
            return len(items)

        return land

    def fail_all(self, error: BaseException) -> None:
        items, self._queue = self._queue, []
        self.queued.clear()
        for item in items:
            _resolve(item, error)


def _resolve(item: Settlement, outcome: BaseException | None) -> None:
    """Hand the settlement's outcome (None: done) to its waiting caller, unless it has one."""
    if item.done.done():
        return
    if outcome is None:
        item.done.set_result(None)
    else:
        item.done.set_exception(outcome)


async def _run(item: Settlement, action: Action) -> None:
    try:
        await action(item.receiver, item.message)
    except Exception as exc:  # noqa: BLE001 - handed to the waiting caller
        _resolve(item, exc)
    else:
        _resolve(item, None)


async def _send_completions(items: list[Settlement]) -> list[tuple[list[Settlement], pipelined.Sent]]:
    """Each receiver's completions sent together (``pipelined``); their echoes are awaited later."""
    by_receiver: dict[ServiceBusReceiver, list[Settlement]] = {}
    for item in items:
        by_receiver.setdefault(item.receiver, []).append(item)
    return [
        (batch, await pipelined.send_all(receiver, [item.message for item in batch]))
        for receiver, batch in by_receiver.items()
    ]
