"""Receiving from a non-session entity, and what both kinds of receiving share.

The receiver's pump asks the service for at most as many messages as the caller could start when it
asked (``max_count``), and ``take`` hands out what has arrived; between receives the pump settles
(``settling``). The receiver prefetches up to the worker's capacity (``AzureBus``): what arrives
after a receive returned stays in the SDK's buffer, and ``take`` skips a buffered message whose lock
is nearly spent (``MIN_LOCK_LEFT_S``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from azure.servicebus.aio import ServiceBusReceiver
from azure.servicebus.exceptions import ServiceBusConnectionError

from worker.buses.azure.convert import Message, lock_left_s
from worker.buses.azure.errors import close_quietly, handler_failures_as_connection_loss, reconnecting
from worker.buses.azure.settling import Action, Settler
from worker.logging import get_logger

if TYPE_CHECKING:
    from worker.buses.azure.sessions import Session

log = get_logger()
T = TypeVar("T")

MIN_LOCK_LEFT_S = 1.0  # a buffered message with less lock left than this is not handed out
# A wait this short is spent before the SDK would read the link: its receive then returns only
# the messages it holds (the SDK refuses a wait of 0). Against the test peer, 3 % more events/s at
# latency 0 with 16 in flight and 4 % more at 100 ms with 64 (three interleaved pairs each), and
# the worker no longer runs dry between receives.
_HELD_ONLY_S = 1e-6


@dataclass(eq=False)
class Lock:
    """What a Delivery's ``lock`` holds: the receiver and the SDK message (and its session)."""

    receiver: ServiceBusReceiver
    message: Message
    session: Session | None = field(default=None, repr=False)
    properties: Mapping[str, Any] | None = None
    """Set when the message is handed out again after a retry held in place."""
    via: QueueReceiving | None = field(default=None, repr=False)
    """The receiving that handed it out, which settles it (``FannedReceiving`` routes by it)."""


class Receiving(Protocol):
    async def open(self) -> None: ...

    async def take(self, max_count: int, wait_s: float) -> list[Lock]: ...

    async def renew(self, lock: Lock) -> None: ...

    async def settle(self, lock: Lock, action: Action | None) -> None: ...

    def settled(self, lock: Lock, *, lost: bool) -> None: ...

    def on_arrival(self, wake: Callable[[], None]) -> None: ...

    async def close(self) -> None: ...


ReceiverFactory = Callable[..., ServiceBusReceiver]


class QueueReceiving:
    """A non-session entity: one receiver, and one pump task that does everything on its link in
    turn: the queued settlements and renewals first (``Settler``), then a receive for what ``take``
    asked for; never a settlement while a receive waits (see ``settling``)."""

    # busy_wait_s: how long a receive waits while work is in flight (its settlements queue behind
    # it). The runs at half speed once seen with every setting (about 300 against 600 events/s,
    # 16 in flight at latency 0 against the test peer) were not this wait but the stall ``_pump``
    # now avoids: a 5-s idle-poll receive in front of the settlements of what was buffered.
    def __init__(
        self, open_receiver: ReceiverFactory, *, poll_s: float, reconnect_s: float, busy_wait_s: float = 0.005
    ) -> None:
        self._open_receiver = open_receiver
        self._receiver: ServiceBusReceiver | None = None
        self._poll_s = poll_s
        self._busy_wait_s = busy_wait_s
        self._reconnect_s = reconnect_s
        self._buffer: deque[tuple[ServiceBusReceiver, Message]] = deque()
        self._settler = Settler()
        self._want = 0
        self._wait = poll_s
        self._wanted = asyncio.Event()
        self._arrived = asyncio.Event()
        self._failure: BaseException | None = None
        self._pump_task: asyncio.Task[None] | None = None
        self._fetching: asyncio.Task[list[Message]] | None = None
        self._closing = False
        self._wake: Callable[[], None] = nothing

    def on_arrival(self, wake: Callable[[], None]) -> None:
        """``wake`` is called when a receive the caller no longer waits for brings messages."""
        self._wake = wake

    async def open(self) -> None:
        await self._connected("open receiver", _connected_already)

    async def _opened(self) -> ServiceBusReceiver:
        """The receiver with its link up, (re)opened here rather than by receive_messages, whose
        short wait would also bound connecting, signing in and attaching, and keep timing out
        (after a dropped connection as well). A no-op while the link is up."""
        if self._receiver is None:
            self._receiver = self._open_receiver()
        await self._receiver.__aenter__()
        return self._receiver

    async def take(self, max_count: int, wait_s: float) -> list[Lock]:
        """Hand out what has arrived; otherwise ask the pump for up to ``max_count`` and wait up to
        ``wait_s`` (0: the caller has work in flight, so the pump's receive waits only briefly)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(wait_s, 0.0)
        while True:
            if self._failure is not None:
                failure, self._failure = self._failure, None
                raise failure  # reconnecting gave up, or bad credentials
            out = self.held(max_count)
            if out:
                return out
            self._want = max_count
            self._wait = self._poll_s if wait_s > 0 else self._busy_wait_s
            self._arrived.clear()
            self._wanted.set()
            self._ensure_pump()
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

    def _ensure_pump(self) -> None:
        if self._pump_task is None and not self._closing:
            self._pump_task = asyncio.create_task(self._pump())

    def give_back(self, lock: Lock) -> None:
        """Keep a message handed out by ``held`` but not taken after all: it goes out next."""
        self._buffer.appendleft((lock.receiver, lock.message))

    def held(self, max_count: int) -> list[Lock]:
        """Up to ``max_count`` of what has arrived, without asking for more."""
        out: list[Lock] = []
        while self._buffer and len(out) < max_count:
            receiver, message = self._buffer.popleft()
            left = lock_left_s(message)
            if left is not None and left < MIN_LOCK_LEFT_S:
                log.warning("lock expired while buffered", transport_message_id=message.message_id)
                continue
            out.append(Lock(receiver, message, via=self))
        return out

    async def _pump(self) -> None:
        while True:
            if len(self._settler):
                # The completions are sent, and confirmed after the receive the caller asked for, if
                # a short one: it reads their echoes along with its messages (one round trip a cycle
                # instead of two; an idle poll's long wait would hold the outcomes back).
                land = await self._settler.send()
                try:
                    if (
                        self._want > 0
                        and self._wait < self._poll_s
                        and not self._buffer
                        and not self._closing
                    ):
                        await self._receive()
                finally:
                    await land()
                continue
            if self._closing:
                return
            if self._want > 0:
                # Only for an empty buffer: what is buffered goes out first, and its settlements
                # must not queue behind a receive (a caller that gave up during the last receive
                # left its wish, with the idle poll's long wait, while that receive filled the
                # buffer: 5 s of stall at the end of a bench run in half the runs).
                await self._receive()
                continue
            self._wanted.clear()
            waits = [asyncio.ensure_future(e.wait()) for e in (self._wanted, self._settler.queued)]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiting in waits:
                    waiting.cancel()

    async def _receive(self) -> None:
        """The receive the caller asked for (``take``), unless the buffer still holds messages.
        Its wait is the one asked for when the pump decided on it: a ``take`` that comes while the
        fetch starts does not turn a short receive, with a batch's echoes to read, into a poll."""
        wanted, self._want = self._want, 0
        wait = self._wait
        self._wanted.clear()
        if not self._buffer:
            await self._fetch_into_buffer(wanted, wait)
        self._arrived.set()

    async def _fetch_into_buffer(self, max_count: int, wait: float) -> None:
        """One receive as a task of its own, so that close() can cancel it (and only it)."""
        self._fetching = asyncio.create_task(self._fetch(max_count, wait))
        try:
            await asyncio.wait({self._fetching})
        finally:
            task, self._fetching = self._fetching, None
        if task.cancelled():
            return
        if (error := task.exception()) is not None:
            self._failure = error
            return
        receiver = self._receiver
        if receiver is not None and (messages := task.result()):
            self._buffer.extend((receiver, m) for m in messages)
            self._wake()

    async def _fetch(self, max_count: int, wait: float) -> list[Message]:
        async def receive(receiver: ServiceBusReceiver) -> list[Message]:
            if wait < self._poll_s:
                # Work is in flight: first what the SDK already holds (its completions read the
                # prefetched messages off the link), without a read of its own.
                held = await receiver.receive_messages(max_count, max_wait_time=_HELD_ONLY_S)
                if held:
                    return held
            return await receiver.receive_messages(max_count, max_wait_time=wait)

        return await self._connected("receive", receive)

    async def _connected(self, what: str, work: Callable[[ServiceBusReceiver], Awaitable[T]]) -> T:
        """``work`` on the open receiver, reconnecting (from a fresh receiver) while the namespace
        is unreachable."""
        async for attempt in reconnecting(self._reconnect_s, what):
            with attempt:
                try:
                    with handler_failures_as_connection_loss():
                        return await work(await self._opened())
                except ServiceBusConnectionError:
                    await self._forget_receiver()  # the next attempt starts from a fresh one
                    raise
        raise AssertionError("unreachable: tenacity reraises")

    async def _forget_receiver(self) -> None:
        """Let a failed receiver go; messages it handed out settle through it (and lose their locks)."""
        receiver, self._receiver = self._receiver, None
        if receiver is not None:
            await close_quietly(receiver)

    async def settle(self, lock: Lock, action: Action | None) -> None:
        """Queue the settlement (``None``: complete) for the pump; wait for its result."""
        self._ensure_pump()
        await self._settler.submit(lock.receiver, lock.message, action)

    async def renew(self, lock: Lock) -> None:
        await self.settle(lock, _renew)

    def settled(self, lock: Lock, *, lost: bool) -> None:
        """Nothing to do: the receiver serves the next fetch regardless."""

    async def close(self) -> None:
        """Stop fetching, finish the queued settlements, abandon what was never handed out, close.

        A fetch cancelled mid-call leaves what arrived in the SDK's buffer (it returns a batch
        without awaiting in between), and closing the receiver releases that buffer.
        """
        self._closing = True
        if self._fetching is not None:
            self._fetching.cancel()
        self._wanted.set()
        if self._pump_task is not None:
            await asyncio.gather(self._pump_task, return_exceptions=True)
            self._pump_task = None
        await self._settler.drain()  # anything queued after the pump stopped
        if self._receiver is not None:
            await asyncio.gather(
                *(receiver.abandon_message(m) for receiver, m in self._buffer), return_exceptions=True
            )
            self._buffer.clear()
            await close_quietly(self._receiver)


def nothing() -> None:
    """What a receiving calls when messages arrive, until the worker gives it its wake."""


async def _connected_already(_: ServiceBusReceiver) -> None:
    """Nothing more to do once the receiver is open."""


async def _renew(receiver: ServiceBusReceiver, message: Message) -> None:
    await receiver.renew_message_lock(message)
