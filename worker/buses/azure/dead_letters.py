"""The dead-letter sub-queue for operators: peek, find, resend, purge (``cwi dlq``, the admin API)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

from azure.servicebus import ServiceBusReceivedMessage, ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusReceiver

from worker.buses.azure.convert import Message, message_id_of, to_dead_letter
from worker.buses.azure.errors import NO_SESSION_ERRORS, DeadLetterLockedError, close_quietly
from worker.buses.azure.receiving import ReceiverFactory
from worker.buses.base import DEAD_LETTER_PROPERTIES, DeadLetter, OutgoingMessage

_SCAN_BATCH = 100

Publish = Callable[[Sequence[OutgoingMessage]], Awaitable[None]]


class DeadLetters:
    """The DeadLetterQueue protocol over one entity's dead-letter sub-queue."""

    def __init__(self, open_receiver: ReceiverFactory, publish: Publish, *, sessions: bool) -> None:
        self._receiver = open_receiver
        self._publish = publish
        self._sessions = sessions
        self._dead_letter: ServiceBusReceiver | None = None
        self._dead_letter_lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def _dead_letter_receiver(self) -> AsyncIterator[ServiceBusReceiver]:
        """The dead-letter sub-queue's receiver, kept for the next operation unless this one fails.

        One operation at a time: concurrent peeks and scans on one receiver would mix their pages.
        """
        async with self._dead_letter_lock:
            if self._dead_letter is None:
                receiver = self._receiver(sub_queue=ServiceBusSubQueue.DEAD_LETTER)
                self._dead_letter = await receiver.__aenter__()  # see QueueReceiving._opened
            try:
                yield self._dead_letter
            except BaseException:
                receiver, self._dead_letter = self._dead_letter, None
                await close_quietly(receiver)
                raise

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The oldest ``limit`` dead letters, peeked (not locked)."""
        found: list[ServiceBusReceivedMessage] = []
        async with self._dead_letter_receiver() as receiver:
            next_seq = 1  # not 0: the SDK reads 0 as "after the last message this receiver saw"
            while len(found) < limit:
                page = await receiver.peek_messages(limit - len(found), sequence_number=next_seq)
                if not page:
                    break
                found.extend(page)
                next_seq = int(page[-1].sequence_number or 0) + 1
        return [to_dead_letter(m) for m in found[:limit]]

    async def find_dead_letter(self, message_id: str) -> DeadLetter | None:
        async with self._dead_letter_receiver() as receiver:
            found = await _peek_for(receiver, message_id)
        return None if found is None else to_dead_letter(found)

    async def holds_message(self, message_id: str, session_id: str | None) -> bool | None:
        """Peeks the dead letters, then the queue (with sessions: the session's messages, which
        needs its lock for a moment; None if another receiver holds it)."""
        if await self.find_dead_letter(message_id) is not None:
            return True
        if not self._sessions:
            async with self._receiver() as receiver:
                return await _peek_for(receiver, message_id) is not None
        try:
            async with self._receiver(session_id=session_id, max_wait_time=1.0) as receiver:
                return await _peek_for(receiver, message_id) is not None
        except NO_SESSION_ERRORS:
            return None

    async def resend_dead_letter(
        self,
        sequence_number: int,
        body: bytes,
        properties: Mapping[str, Any],
        *,
        message_id: str | None = None,
        sent: Callable[[], None] | None = None,
    ) -> bool:
        """Lock the dead letter, publish a replacement (same session), then remove the dead letter.

        Not atomic as on the local bus: a failure between the two leaves both; a rerun with the
        same ``message_id`` finds the copy (``holds_message``) and the inbox absorbs a double.
        """
        clean = {k: v for k, v in properties.items() if k not in DEAD_LETTER_PROPERTIES}

        async def resend(receiver: ServiceBusReceiver, letter: Message) -> None:
            new_id = message_id or str(uuid.uuid4())
            await self._publish([OutgoingMessage(body, new_id, letter.session_id, clean)])
            if sent is not None:
                sent()
            await receiver.complete_message(letter)

        return await self._with_dead_letter(sequence_number, resend)

    async def purge_dead_letter(self, sequence_number: int) -> bool:
        return await self._with_dead_letter(sequence_number, lambda r, m: r.complete_message(m))

    async def _with_dead_letter(
        self, sequence_number: int, action: Callable[[ServiceBusReceiver, Message], Awaitable[None]]
    ) -> bool:
        """Lock dead letters until the one with ``sequence_number`` turns up; act on it, let the rest go.

        Service Bus receives by sequence number only what was deferred, so this peeks to learn
        whether the message is there at all, then scans, one message per receive: a larger batch
        leaves link credit behind, and the next receive on this receiver then waits out its
        ``max_wait_time`` (seen with the SDK against the test peer). Operators act oldest first,
        so the target is usually the first message.
        """
        async with self._dead_letter_receiver() as receiver:
            peeked = await receiver.peek_messages(1, sequence_number=sequence_number)
            if not peeked or peeked[0].sequence_number != sequence_number:
                return False
            held: list[Message] = []
            try:
                while batch := await receiver.receive_messages(max_message_count=1, max_wait_time=2.0):
                    for message in batch:
                        if message.sequence_number == sequence_number:
                            await _acting_on(receiver, message, action)
                            return True
                        held.append(message)
                again = await receiver.peek_messages(1, sequence_number=sequence_number)
                if again and again[0].sequence_number == sequence_number:
                    raise DeadLetterLockedError(
                        f"dead letter {sequence_number} is locked by another receiver (an interrupted "
                        "operation?); try again once its lock expires"
                    )
                return False  # just settled by someone else
            finally:
                await asyncio.gather(*(receiver.abandon_message(m) for m in held), return_exceptions=True)

    async def close(self) -> None:
        if self._dead_letter is not None:
            await close_quietly(self._dead_letter)


async def _acting_on(
    receiver: ServiceBusReceiver,
    message: Message,
    action: Callable[[ServiceBusReceiver, Message], Awaitable[None]],
) -> None:
    """Run ``action``; if it fails, let the dead letter go at once rather than when its lock expires."""
    try:
        await action(receiver, message)
    except BaseException:
        await asyncio.gather(receiver.abandon_message(message), return_exceptions=True)
        raise


async def _peek_for(receiver: ServiceBusReceiver, message_id: str) -> Message | None:
    """The first message with this transport id, peeking the whole entity in pages."""
    next_seq = 1  # not 0: the SDK reads 0 as "after the last message this receiver saw"
    while page := await receiver.peek_messages(_SCAN_BATCH, sequence_number=next_seq):
        for message in page:
            if message_id_of(message) == message_id:
                return message
        next_seq = int(page[-1].sequence_number or 0) + 1
    return None
