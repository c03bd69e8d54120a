"""Receiving from a non-session entity, and what both kinds of receiving share.

A background fetch asks the service for at most as many messages as the caller could start when it
asked (``max_count``), and ``take`` hands out what has arrived. Prefetch stays 0: the lock clock
starts when the service sends a message, so a message may only be fetched once a slot is free.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from azure.servicebus.aio import ServiceBusReceiver
from azure.servicebus.exceptions import ServiceBusConnectionError

from worker.buses.azure.convert import Message, lock_left_s
from worker.buses.azure.errors import close_quietly, handler_failures_as_connection_loss, reconnecting
from worker.logging import get_logger

if TYPE_CHECKING:
    from worker.buses.azure.sessions import Session

log = get_logger()

MIN_LOCK_LEFT_S = 1.0  # a buffered message with less lock left than this is not handed out


@dataclass(eq=False)
class Lock:
    """What a Delivery's ``lock`` holds: the receiver and the SDK message (and its session)."""

    receiver: ServiceBusReceiver
    message: Message
    session: Session | None = field(default=None, repr=False)
    properties: Mapping[str, Any] | None = None
    """Set when the message is handed out again after a retry held in place."""


class Receiving(Protocol):
    async def open(self) -> None: ...

    async def take(self, max_count: int, wait_s: float) -> list[Lock]: ...

    async def renew(self, lock: Lock) -> None: ...

    def settled(self, lock: Lock, *, lost: bool) -> None: ...

    async def close(self) -> None: ...


ReceiverFactory = Callable[..., ServiceBusReceiver]


class QueueReceiving:
    """A non-session entity: one receiver, one background fetch at a time, a small hand-out buffer."""

    def __init__(self, open_receiver: ReceiverFactory, *, poll_s: float, reconnect_s: float) -> None:
        self._open_receiver = open_receiver
        self._receiver: ServiceBusReceiver | None = None
        self._poll_s = poll_s
        self._reconnect_s = reconnect_s
        self._buffer: deque[Message] = deque()
        self._task: asyncio.Task[list[Message]] | None = None

    async def open(self) -> None:
        await self._opened()

    async def _opened(self) -> ServiceBusReceiver:
        """The receiver with its link up, (re)opened here rather than by receive_messages, whose
        short wait would also bound connecting, signing in and attaching, and keep timing out
        (after a dropped connection as well). A no-op while the link is up."""
        if self._receiver is None:
            self._receiver = self._open_receiver()
        await self._receiver.__aenter__()
        return self._receiver

    async def take(self, max_count: int, wait_s: float) -> list[Lock]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(wait_s, 0.0)
        while True:
            self._collect()
            out = self._pop(max_count)
            if out and self._receiver is not None:
                return [Lock(self._receiver, m) for m in out]
            if self._task is None:
                self._task = asyncio.create_task(self._fetch(max_count))
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            await asyncio.wait({self._task}, timeout=remaining)

    def _collect(self) -> None:
        if self._task is not None and self._task.done():
            task, self._task = self._task, None
            self._buffer.extend(task.result())  # raises when reconnecting gave up, or on bad credentials

    def _pop(self, max_count: int) -> list[Message]:
        out: list[Message] = []
        while self._buffer and len(out) < max_count:
            message = self._buffer.popleft()
            left = lock_left_s(message)
            if left is not None and left < MIN_LOCK_LEFT_S:
                log.warning("lock expired while buffered", transport_message_id=message.message_id)
                continue
            out.append(message)
        return out

    async def _fetch(self, max_count: int) -> list[Message]:
        async for attempt in reconnecting(self._reconnect_s, "receive"):
            with attempt:
                try:
                    with handler_failures_as_connection_loss():
                        receiver = await self._opened()
                        return await receiver.receive_messages(
                            max_message_count=max_count, max_wait_time=self._poll_s
                        )
                except ServiceBusConnectionError:
                    await self._forget_receiver()  # the next attempt starts from a fresh one
                    raise
        raise AssertionError("unreachable: tenacity reraises")

    async def _forget_receiver(self) -> None:
        """Let a failed receiver go; messages it handed out settle through it (and lose their locks)."""
        receiver, self._receiver = self._receiver, None
        if receiver is not None:
            await close_quietly(receiver)

    async def renew(self, lock: Lock) -> None:
        await lock.receiver.renew_message_lock(lock.message)

    def settled(self, lock: Lock, *, lost: bool) -> None:
        """Nothing to do: the receiver serves the next fetch regardless."""

    async def close(self) -> None:
        """Stop fetching, abandon what was never handed out, close the receiver.

        A fetch cancelled mid-call leaves what arrived in the SDK's buffer (it returns a batch
        without awaiting in between), and closing the receiver releases that buffer.
        """
        if self._task is not None:
            self._task.cancel()
            [fetched] = await asyncio.gather(self._task, return_exceptions=True)
            if isinstance(fetched, list):
                self._buffer.extend(fetched)
            self._task = None
        if self._receiver is not None:
            await asyncio.gather(
                *(self._receiver.abandon_message(m) for m in self._buffer), return_exceptions=True
            )
            self._buffer.clear()
            await close_quietly(self._receiver)
