"""Receiving from a session entity: several sessions in flight, one message at a time in each.

Each accepted session gets its own receiver (the SDK binds a receiver to one session). A session's
next message is fetched only after the previous one is settled, and a session with nothing more to
give within ``idle_s`` is let go so that other workers may take it.

A delayed retry is held in place: the message keeps its lock (the session's), the session keeps
its receiver and is renewed while the retry waits, and the message is handed out again when it is
due. The session's later messages wait behind it (per-client order), while it costs the worker
no slot: other sessions are accepted meanwhile. A scheduled copy would instead join the end of
the session, behind the client's later messages, and let an older change overtake a newer one.
If the worker stops or dies while a retry is held, the message comes back at once with its
delivery count raised (Service Bus's MaxDeliveryCount still bounds it).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from azure.servicebus import NEXT_AVAILABLE_SESSION, ServiceBusReceivedMessage
from azure.servicebus.aio import ServiceBusReceiver

from worker.buses.azure.convert import Message
from worker.buses.azure.errors import (
    NO_SESSION_ERRORS,
    close_quietly,
    handler_failures_as_connection_loss,
    reconnecting,
)
from worker.buses.azure.receiving import Lock, ReceiverFactory, nothing
from worker.buses.azure.settling import Action
from worker.logging import get_logger

log = get_logger()

_MIN_ACCEPT_S = 0.25  # a "no session available" answer is not asked again sooner than this
# Each accept opens a connection of its own (the SDK shares none between receivers): ramp up, do not
# stampede. Against the test peer, 64 in flight at 100 ms over 128 sessions: 4 left most lanes empty
# (102 events/s); 16 gave 378-387/s and 32 gave 416-425/s (2026-12-06), when an accept took half a
# second (the SDK's 50-ms naps, gone since: client.py) and the peer dropped connects beyond 10 at once.
# Without both, 32, 64 and 128 were level (546-561/s, 2026-12-07): 32 keeps the burst of connections
# a namespace sees small.
_MAX_PARALLEL_ACCEPTS = 32


@dataclass(eq=False)
class Session:
    receiver: ServiceBusReceiver
    session_id: str
    renewed_at: float  # monotonic time the session lock was last granted
    ready: Message | None = None
    ready_properties: Mapping[str, Any] | None = None
    fetch: asyncio.Task[Message | None] | None = None
    busy: bool = False  # one of its messages is out, unsettled, or held for its retry
    hold: asyncio.Task[None] | None = None
    held: Message | None = None


class SessionReceiving:
    """A session entity: up to ``max_count`` sessions in flight, one message at a time in each."""

    def __init__(
        self,
        open_receiver: ReceiverFactory,
        *,
        idle_s: float,
        accept_wait_s: float,
        reconnect_s: float,
        lock_duration_s: Callable[[], float],
    ) -> None:
        self._open_receiver = open_receiver
        self._idle_s = idle_s
        self._accept_wait_s = accept_wait_s
        self._reconnect_s = reconnect_s
        self._lock_duration_s = lock_duration_s
        self._sessions: list[Session] = []
        self._accepts: set[asyncio.Task[Session | None]] = set()
        self._closing: set[asyncio.Task[None]] = set()
        self._found_none = False  # the last accept found no session: look with one receiver only
        self._wake: Callable[[], None] = nothing

    def on_arrival(self, wake: Callable[[], None]) -> None:
        """``wake`` is called when an accept, a session's next message or a held retry is done."""
        self._wake = wake

    def _woken(self, _: asyncio.Future[Any]) -> None:
        self._wake()

    async def open(self) -> None:
        """Nothing to open ahead: a session receiver exists only once a session is accepted."""

    async def take(self, max_count: int, wait_s: float) -> list[Lock]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(wait_s, 0.0)
        while True:
            self._harvest()
            out = self._hand_out(max_count)
            self._start_accepts(max_count - len(out))
            remaining = deadline - loop.time()
            pending = self._pending()
            if out or remaining <= 0 or not pending:
                return out
            await asyncio.wait(pending, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)

    def _pending(self) -> set[asyncio.Future[Any]]:
        fetches = {s.fetch for s in self._sessions if s.fetch is not None}
        holds = {s.hold for s in self._sessions if s.hold is not None}
        return {*fetches, *holds, *self._accepts}

    def _hand_out(self, max_count: int) -> list[Lock]:
        out: list[Lock] = []
        for session in self._sessions:
            if len(out) == max_count:
                break
            if session.ready is not None and not session.busy:
                out.append(Lock(session.receiver, session.ready, session, session.ready_properties))
                session.ready, session.ready_properties, session.busy = None, None, True
        return out

    def _start_accepts(self, budget: int) -> None:
        """Accept more sessions while what could still arrive stays within what the caller can start."""
        waiting = sum(1 for s in self._sessions if not s.busy) + len(self._accepts)
        parallel = 1 if self._found_none else _MAX_PARALLEL_ACCEPTS
        wanted = min(budget - waiting, parallel - len(self._accepts))
        for _ in range(max(wanted, 0)):
            task = asyncio.create_task(self._accept())
            task.add_done_callback(self._woken)
            self._accepts.add(task)

    def _harvest(self) -> None:
        for session in list(self._sessions):
            if session.hold is not None and session.hold.done():
                held, session.hold = session.hold, None
                failure = None if held.cancelled() else held.exception()
                if failure is not None or held.cancelled():
                    self._drop(session, failure)
                continue
            if session.fetch is None or not session.fetch.done():
                continue
            task, session.fetch = session.fetch, None
            error = None if task.cancelled() else task.exception()
            if error is None and not task.cancelled() and (message := task.result()) is not None:
                session.ready = message
            else:
                self._drop(session, error)
        for accept in [t for t in self._accepts if t.done()]:
            self._accepts.discard(accept)
            accepted = accept.result()  # raises when reconnecting gave up, or on bad credentials
            self._found_none = accepted is None
            if accepted is not None:
                self._sessions.append(accepted)

    async def _accept(self) -> Session | None:
        """The next available session with its first message, or None when no session has one."""
        started = time.monotonic()
        async for attempt in reconnecting(self._reconnect_s, "accept session"):
            with attempt:
                accepted = await self._accept_once()
        if accepted is None:
            # Some peers answer "no session" at once: do not open a connection in a tight loop.
            await asyncio.sleep(max(0.0, _MIN_ACCEPT_S - (time.monotonic() - started)))
        return accepted

    async def _accept_once(self) -> Session | None:
        receiver = self._open_receiver(session_id=NEXT_AVAILABLE_SESSION, max_wait_time=self._accept_wait_s)
        try:
            with handler_failures_as_connection_loss():
                messages = await receiver.receive_messages(
                    max_message_count=1, max_wait_time=self._accept_wait_s
                )
        except NO_SESSION_ERRORS:
            messages = []
        except BaseException:
            await close_quietly(receiver)
            raise
        if not messages:
            await close_quietly(receiver)
            return None
        session_id = str(receiver.session.session_id)
        # Granted when the link attached, which the service delays until a session is available:
        # moments before its first message arrived.
        return Session(receiver, session_id, renewed_at=time.monotonic(), ready=messages[0])

    async def _next(self, session: Session) -> Message | None:
        """The session's next message; when it has none, let the session go at once, not at the next
        receive(): an idle link still holds credit, and a message the service sends on it then
        would come back with its delivery count raised when the receiver closes."""
        try:
            messages = await session.receiver.receive_messages(
                max_message_count=1, max_wait_time=self._idle_s
            )
        except BaseException:
            await close_quietly(session.receiver)
            raise
        if not messages:
            await close_quietly(session.receiver)
            return None
        # The runner renews from hand-out on; give it a nearly fresh session lock to start from.
        if time.monotonic() - session.renewed_at > self._lock_duration_s() / 10:
            await self._renew_session(session)
        return messages[0]

    async def _renew_session(self, session: Session) -> None:
        asked = time.monotonic()  # the new lock runs from no earlier than the request
        await session.receiver.session.renew_lock()
        session.renewed_at = asked

    async def renew(self, lock: Lock) -> None:
        assert lock.session is not None
        await self._renew_session(lock.session)

    async def settle(self, lock: Lock, action: Action | None) -> None:
        """At once: nothing else uses the session's link while its one message is out."""
        if action is None:
            await lock.receiver.complete_message(lock.message)
        else:
            await action(lock.receiver, lock.message)

    def hold(self, lock: Lock, delay_s: float, properties: Mapping[str, Any]) -> None:
        """Keep the message (and its session) for a retry in ``delay_s``; hand it out again then."""
        session = lock.session
        if session is None or session not in self._sessions:
            raise ValueError(f"message {lock.message.message_id} has no session held by this receiver")
        session.held = lock.message
        session.hold = asyncio.create_task(self._wait_out(session, delay_s, properties))
        session.hold.add_done_callback(self._woken)

    async def _wait_out(self, session: Session, delay_s: float, properties: Mapping[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time() + max(delay_s, 0.0)
        while (left := due - loop.time()) > 0:
            period = max(self._lock_duration_s() / 3, 0.05)
            await asyncio.sleep(min(left, period))
            if time.monotonic() - session.renewed_at >= period and due - loop.time() > 0:
                await self._renew_session(session)
        session.ready, session.ready_properties, session.held = session.held, properties, None
        session.busy = False

    def settled(self, lock: Lock, *, lost: bool) -> None:
        session = lock.session
        if session is None or session not in self._sessions:
            return
        session.busy = False
        if lost:
            self._drop(session, None)
        else:
            session.fetch = asyncio.create_task(self._next(session))
            session.fetch.add_done_callback(self._woken)

    def _drop(self, session: Session, error: BaseException | None) -> None:
        """Forget the session (idle, lock or connection lost); its receiver closes in the background
        (again, harmlessly, if its fetch closed it already)."""
        if error is not None:
            log.warning("session receiver failed", session_id=session.session_id, error=str(error))
        self._sessions.remove(session)
        task = asyncio.create_task(close_quietly(session.receiver))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        """Stop accepting, abandon what was never handed out, let every session go, all at once."""
        for accept in self._accepts:
            accept.cancel()
        sessions, self._sessions = self._sessions, []
        await asyncio.gather(*self._accepts, *(self._let_go(s) for s in sessions), return_exceptions=True)
        self._accepts.clear()
        await asyncio.gather(*self._closing, return_exceptions=True)

    @staticmethod
    async def _let_go(session: Session) -> None:
        if session.hold is not None:
            session.hold.cancel()
            await asyncio.gather(session.hold, return_exceptions=True)
        if session.held is not None:
            with contextlib.suppress(Exception):
                await session.receiver.abandon_message(session.held)
        if session.fetch is not None:
            session.fetch.cancel()
            [fetched] = await asyncio.gather(session.fetch, return_exceptions=True)
            if isinstance(fetched, ServiceBusReceivedMessage):
                session.ready = fetched
        if session.ready is not None:
            with contextlib.suppress(Exception):
                await session.receiver.abandon_message(session.ready)
        await close_quietly(session.receiver)
