"""One settler per receiver: settlements and lock renewals queued, done by one task, never while a
receive waits on the same link.

Why: with the async SDK every settlement waits for the service's echo by reading the connection
itself, one frame at a time under the transport's socket lock. Settlements awaited by many tasks
while a ``receive_messages`` call holds that lock queue behind its reads (each up to the socket
timeout), and are settled about twenty times slower than the same settlements made by one task
between receives (bench/sb_bare.py). So the runner's tasks only queue their settlement and await
its result; the receiver's pump (``QueueReceiving``) drains the queue between receives.

Completions of one batch are pipelined: every disposition is sent first (contiguous delivery ids
as one ranged disposition), then the echoes are awaited together, one round trip for the batch.
That uses the SDK's AMQP link below its public API; where it is not there (another SDK version) or
anything about the batch fails, each message is settled on its own through the public API, which
keeps the per-message error mapping (a message the batch did complete then reports its lock lost:
harmless, its outcome is journalled).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from azure.servicebus.aio import ServiceBusReceiver

from worker.buses.azure.convert import Message
from worker.logging import get_logger

log = get_logger()

_OUTCOME_TIMEOUT_S = 30.0

Action = Callable[[ServiceBusReceiver, Message], Awaitable[None]]


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
        items, self._queue = self._queue, []
        self.queued.clear()
        completes = [i for i in items if i.action is None]
        others = [i for i in items if i.action is not None]
        if completes:
            await _complete_all(completes)
        for item in others:
            assert item.action is not None
            await _run(item, item.action)
        return len(items)

    def fail_all(self, error: BaseException) -> None:
        items, self._queue = self._queue, []
        self.queued.clear()
        for item in items:
            if not item.done.done():
                item.done.set_exception(error)


async def _run(item: Settlement, action: Action) -> None:
    try:
        await action(item.receiver, item.message)
    except Exception as exc:  # noqa: BLE001 - handed to the waiting caller
        if not item.done.done():
            item.done.set_exception(exc)
    else:
        if not item.done.done():
            item.done.set_result(None)


async def _complete_one(receiver: ServiceBusReceiver, message: Message) -> None:
    await receiver.complete_message(message)


async def _complete_all(items: list[Settlement]) -> None:
    by_receiver: dict[int, list[Settlement]] = {}
    for item in items:
        by_receiver.setdefault(id(item.receiver), []).append(item)
    for group in by_receiver.values():
        rest = group
        if len(group) > 1:
            try:
                await _pipelined(group)
                rest = []
            except Exception as exc:  # noqa: BLE001 - each one again on its own, through the public API
                log.debug("batched completion failed; completing one by one", error=repr(exc))
        for item in rest:
            await _run(item, _complete_one)


async def _pipelined(items: list[Settlement]) -> None:
    """Every disposition sent, then every echo awaited: one round trip for the batch."""
    from azure.servicebus._pyamqp.outcomes import Accepted  # the SDK's own AMQP layer (pyamqp)
    from azure.servicebus._pyamqp.receiver import check_disposition_outcome

    receiver = items[0].receiver
    handler: Any = getattr(receiver, "_handler", None)
    link: Any = getattr(handler, "_link", None)
    if link is None or not hasattr(link, "_pending_dispositions") or getattr(receiver, "_session", None):
        raise RuntimeError("no pipelined settlement on this receiver")
    messages: list[Any] = [i.message for i in items]
    if any(m._settled or m._lock_expired or m._delivery_id is None for m in messages):
        raise RuntimeError("a message of the batch cannot be settled on the link")
    ordered = sorted(items, key=lambda i: int(i.message._delivery_id))
    runs: list[list[Settlement]] = []
    for item in ordered:
        did = int(item.message._delivery_id)
        if runs and int(runs[-1][-1].message._delivery_id) + 1 == did:
            runs[-1].append(item)
        else:
            runs.append([item])
    ids = [int(m._delivery_id) for m in messages]
    for delivery_id in ids:
        link._pending_dispositions[delivery_id] = {"settled": False, "outcome": None}
    try:
        for run in runs:
            first: Any = run[0].message
            last = int(run[-1].message._delivery_id)
            await link._outgoing_disposition(
                int(first._delivery_id),
                None if len(run) == 1 else last,
                first._delivery_tag,
                False,
                Accepted(),
                None,
            )
    except BaseException:
        for delivery_id in ids:
            link._pending_dispositions.pop(delivery_id, None)
        raise
    outcomes = await _echoes(link, ids)
    rest: list[Settlement] = []
    for item in items:
        delivery_id = item.message._delivery_id
        try:
            check_disposition_outcome(delivery_id, outcomes.get(delivery_id), "accepted")
        except Exception:  # noqa: BLE001 - not applied (lock lost, …): the public API says why
            rest.append(item)
            continue
        item.message._settled = True
        if not item.done.done():
            item.done.set_result(None)
    for item in rest:
        await _run(item, _complete_one)


async def _echoes(link: Any, ids: list[int]) -> dict[int, Any]:
    """Read the connection until every delivery's echo is in (or the link fails, or time runs out);
    each delivery's outcome, None where none came."""
    pending = link._pending_dispositions
    deadline = time.monotonic() + _OUTCOME_TIMEOUT_S
    try:
        while not all(pending[i]["settled"] for i in ids) and time.monotonic() < deadline:
            await link._session._connection.listen(wait=False)
            if link._error is not None:
                break
        return {i: pending[i]["outcome"] if pending[i]["settled"] else None for i in ids}
    finally:
        for delivery_id in ids:
            pending.pop(delivery_id, None)
