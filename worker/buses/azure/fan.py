"""Several receivers on one entity without sessions, received from and settled as one
(``CWI_SERVICEBUS_RECEIVERS``, default 1).

Why: a receiver's pump settles its messages one after another, each waiting for the service's echo
(``settling``), and never while its receive waits. At latency 0 with 16 in flight that chain was the
worker's limit on a queue: with four receivers, each with a pump and a connection of its own, the
echoes of four settlements are awaited at once (against the test peer, four interleaved pairs of
``bench/azure.py --events 3000 --concurrency 16``: +15 to +31 %, median +21 %, 0.8 MB more).

Why not by default: when the process dies (or the network drops all its connections), they close
one after another as the service sees them, and a message whose lock went with the first can be
handed to a receiver of the same process whose connection is not yet known to be gone, and lose its
lock again: each such bounce counts as a delivery (seen with the test peer: one SIGKILL took a
message from 0 to 2 deliveries and to the dead-letter queue with MaxDeliveryCount 2; a dropped
network raised redelivered messages' counts past 2 in `test_bus_behaviour_locks`). With one receiver
a crash or a drop costs one delivery.

The worker's capacity is split between them: each prefetches its share (``receivers``), so that the
worker holds no more messages than with one receiver. ``take`` hands out what any of them holds,
starting with a different one each time; when none holds anything, it asks each for its share and
returns what the first to answer brought. A message settles through the receiver it came from
(``Lock.via``).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence

from worker.buses.azure.receiving import Lock, QueueReceiving, ReceiverFactory, Receiving
from worker.buses.azure.settling import Action


def receivers(
    open_receiver: ReceiverFactory, *, count: int, prefetch: int, poll_s: float, reconnect_s: float
) -> Receiving:
    """``count`` receivers (no more than the messages prefetched: at least one), each prefetching
    its share of ``prefetch``; one is a plain ``QueueReceiving``."""
    count = max(1, min(count, prefetch))
    parts = [
        QueueReceiving(
            functools.partial(open_receiver, prefetch_count=prefetch // count + (i < prefetch % count)),
            poll_s=poll_s,
            reconnect_s=reconnect_s,
        )
        for i in range(count)
    ]
    return parts[0] if count == 1 else FannedReceiving(parts)


class FannedReceiving:
    def __init__(self, parts: Sequence[QueueReceiving]) -> None:
        if not parts:
            raise ValueError("a fan of receivers needs at least one")
        self._parts = list(parts)
        self._turn = 0
        self._failure: BaseException | None = None

    async def open(self) -> None:
        await asyncio.gather(*(part.open() for part in self._parts))

    def on_arrival(self, wake: Callable[[], None]) -> None:
        for part in self._parts:
            part.on_arrival(wake)

    def _in_turn(self) -> list[QueueReceiving]:
        self._turn = (self._turn + 1) % len(self._parts)
        return self._parts[self._turn :] + self._parts[: self._turn]

    def _raise_failure(self) -> None:
        """Raise (once) what made a receiver give up reconnecting, if one did."""
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure

    async def take(self, max_count: int, wait_s: float) -> list[Lock]:
        self._raise_failure()
        parts = self._in_turn()
        out: list[Lock] = []
        for part in parts:
            out += part.held(max_count - len(out))
        if out:
            return out
        share = -(-max_count // len(parts))
        asking = [asyncio.ensure_future(part.take(share, wait_s)) for part in parts]
        try:
            pending: set[asyncio.Future[list[Lock]]] = set(asking)
            while pending and not out and self._failure is None:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for answered in done:
                    if (error := answered.exception()) is not None:
                        self._failure = error  # a receiver that gave up reconnecting
                    else:
                        out += answered.result()
        finally:
            for still in asking:
                still.cancel()  # its pump goes on: what it receives waits in its buffer (``held``)
        for extra in reversed(out[max_count:]):  # two answered at once: the caller has room for max_count
            _via(extra).give_back(extra)
        del out[max_count:]
        if not out:
            self._raise_failure()  # otherwise the next take raises it: these go out first
        return out

    async def renew(self, lock: Lock) -> None:
        await _via(lock).renew(lock)

    async def settle(self, lock: Lock, action: Action | None) -> None:
        await _via(lock).settle(lock, action)

    def settled(self, lock: Lock, *, lost: bool) -> None:
        _via(lock).settled(lock, lost=lost)

    async def close(self) -> None:
        await asyncio.gather(*(part.close() for part in self._parts))


def _via(lock: Lock) -> QueueReceiving:
    if lock.via is None:
        raise TypeError(f"message {lock.message.message_id} was not received by a receiver of this fan")
    return lock.via
