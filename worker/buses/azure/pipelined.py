"""Completing a pump's batch in one round trip: each message's disposition sent back to back, the
service's echoes awaited together, each message's outcome reported on its own.

Why below the SDK's public API: ``complete_message`` sends one disposition and reads the connection
until its echo is in, so one pump completing ten messages waits ten round trips one after another
(0.8 ms each against the test peer, a network round trip each on a real namespace); completions
awaited by several tasks at once read frames for each other and wait out the socket's timeout
(``bench/sb_bare.py --mode between-gather``). The SDK's link keeps a table of the dispositions
awaiting an outcome and files every echo that arrives into it, whoever reads the frame: this
module fills that table for the whole batch, sends the batch, and reads until each is answered.
(A single ranged disposition for the batch was tried before: one lost lock held the batch.)

What it relies on (azure-servicebus 7.15, pyamqp transport), checked before each use: the
receiver's ``_handler._link`` with ``_pending_dispositions``, ``_received_delivery_tags`` and
``send_disposition``, the connection's ``listen``, and each message's ``_delivery_id`` and
``_delivery_tag``. Anything else (an SDK without them, a link not attached, a deferred, settled or
expired message, one the link did not deliver, a batch of one, a disposition that cannot be sent)
goes through ``complete_message``, one by one, as before: a message from before a reconnect is then
settled through $management, as the SDK settles it. An SDK upgrade that takes these away fails
``tests/integration/test_azure_pipelined.py``, not the worker. Outcomes are the SDK's own: its
check of the echo and its exception mapping (``MessageLockLostError`` for a lost lock); an
echo that does not come (the link detached, the SDK's operation timeout) is a ``ServiceBusError``,
which the bus reports as unconfirmed (redelivered unless it applied: harmless, the redelivery is
recognised); so is a refusal the SDK would have retried (the service busy), not retried here.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from azure.servicebus.aio import ServiceBusReceiver
from azure.servicebus.exceptions import ServiceBusError

from worker.buses.azure.convert import Message
from worker.logging import get_logger

log = get_logger()

Outcome = BaseException | None
"""A message's result: None when completed, else the error ``complete_message`` would raise."""

_TIMEOUT_S = 60.0  # the SDK's default operation timeout, when its config does not say


@functools.cache
def _sdk() -> tuple[Any, Callable[..., None]] | None:
    """The SDK's own outcome and echo check (absent in other SDK versions); looked up once."""
    try:
        from azure.servicebus._pyamqp.outcomes import Accepted
        from azure.servicebus._pyamqp.receiver import check_disposition_outcome
    except ImportError:  # pragma: no cover - an SDK without pyamqp
        return None
    return Accepted(), check_disposition_outcome


def _link(receiver: ServiceBusReceiver) -> Any | None:
    """The receiver's AMQP link, when this SDK has what pipelining needs and the link is attached."""
    if not getattr(receiver, "_await_settlement_outcome", False):
        return None  # the SDK settles without waiting for an echo: nothing to gain
    link = getattr(getattr(receiver, "_handler", None), "_link", None)
    pending = getattr(link, "_pending_dispositions", None)
    if not isinstance(pending, dict) or not hasattr(link, "send_disposition"):
        return None
    if getattr(getattr(link, "state", None), "name", None) != "ATTACHED":
        return None
    return link


def _eligible(message: Message) -> bool:
    try:
        return (
            isinstance(getattr(message, "_delivery_id", None), int)
            and bool(getattr(message, "_delivery_tag", None))
            and not message._is_deferred_message
            and not message._settled
            and not message._lock_expired
        )
    except (AttributeError, TypeError):  # another SDK's message, or a session's
        return False


@dataclass(eq=False)
class Sent:
    """A batch whose dispositions are on the wire: ``confirm`` reads what is left of the echoes
    (a receive between the two has usually read them all) and gives each message's outcome."""

    receiver: ServiceBusReceiver
    messages: Sequence[Message]
    outcomes: list[Outcome]  # filled already for what went one by one or failed to send
    link: Any = None
    sent: dict[int, int] = field(default_factory=dict)  # delivery id → index

    async def confirm(self) -> list[Outcome]:
        """Each message's outcome, in order; the SDK's table of dispositions left as it was."""
        sdk = _sdk()
        if not self.sent or sdk is None:
            return self.outcomes
        await _await_echoes(self.receiver, self.link, set(self.sent))
        for delivery_id, index in self.sent.items():
            message = self.messages[index]
            self.outcomes[index] = await _outcome(self.receiver, self.link, delivery_id, message, sdk[1])
        self.sent = {}
        return self.outcomes


async def complete_all(receiver: ServiceBusReceiver, messages: Sequence[Message]) -> list[Outcome]:
    """Complete ``messages`` (all received by ``receiver``); one outcome each, in order."""
    return await (await send_all(receiver, messages)).confirm()


async def send_all(receiver: ServiceBusReceiver, messages: Sequence[Message]) -> Sent:
    """Send the completions of ``messages`` (all received by ``receiver``) without waiting for the
    service's echoes; ``Sent.confirm`` awaits them. Whatever cannot be pipelined is completed here,
    one by one, through the public call."""
    link = _link(receiver) if len(messages) > 1 else None
    sdk = _sdk() if link is not None else None
    batch = Sent(receiver, messages, [None] * len(messages), link)
    if link is None or sdk is None:
        batch.outcomes = [await _one(receiver, m) for m in messages]
        return batch
    accepted = sdk[0]
    for index, message in enumerate(messages):
        if not _eligible(message) or message._delivery_id in batch.sent or not _came_on(link, message):
            batch.outcomes[index] = await _one(receiver, message)
            continue
        delivery_id = message._delivery_id
        link._pending_dispositions[delivery_id] = {"settled": False, "outcome": None}
        try:
            await link.send_disposition(
                wait=False,
                first_delivery_id=delivery_id,
                delivery_tag=message._delivery_tag,
                settled=False,
                delivery_state=accepted,
                await_outcome=False,
            )
        except Exception:  # noqa: BLE001 - settled as the SDK's own call settles it
            link._pending_dispositions.pop(delivery_id, None)
            batch.outcomes[index] = await _one(receiver, message)
            continue
        batch.sent[delivery_id] = index
    return batch


def _came_on(link: Any, message: Message) -> bool:
    """Whether ``link`` delivered ``message``. One received before the receiver reconnected came on
    a link that is gone: its delivery id may name another message on this one, and the link refuses
    its tag, an error that, mapped as a failure of the link, would shut this one down too."""
    tags = getattr(link, "_received_delivery_tags", None)
    return tags is None or message._delivery_tag in tags


async def _one(receiver: ServiceBusReceiver, message: Message) -> Outcome:
    try:
        await receiver.complete_message(message)
    except Exception as exc:  # noqa: BLE001 - this message's outcome
        return exc
    return None


async def _await_echoes(receiver: ServiceBusReceiver, link: Any, ids: set[int]) -> None:
    """Read the connection until every disposition in ``ids`` is answered, the link goes, or the
    SDK's operation timeout passes; the echoes land in the link's table as they are read."""
    pending = link._pending_dispositions
    timeout = getattr(getattr(receiver, "_config", None), "timeout", None) or _TIMEOUT_S
    deadline = time.monotonic() + timeout
    while any(not pending.get(i, {}).get("settled", True) for i in ids):  # a missing one: unconfirmed
        if time.monotonic() >= deadline or link.state.name in ("DETACHED", "ERROR"):
            return
        try:
            await link._session._connection.listen(wait=False)
        except Exception as exc:  # noqa: BLE001 - every unanswered one is then unconfirmed
            log.debug("reading settlement echoes failed", error=str(exc))
            return


async def _outcome(
    receiver: ServiceBusReceiver, link: Any, delivery_id: int, message: Message, check: Callable[..., None]
) -> Outcome:
    entry = link._pending_dispositions.pop(delivery_id, None)
    if not isinstance(entry, dict) or not entry.get("settled"):
        return ServiceBusError(f"the completion of delivery {delivery_id} was sent but not confirmed")
    try:
        check(delivery_id, entry.get("outcome"))
    except Exception as exc:  # noqa: BLE001 - the service refused it (a lost lock)
        return await _mapped(receiver, exc)
    message._settled = True
    return None


async def _mapped(receiver: ServiceBusReceiver, exc: Exception) -> BaseException:
    """The exception ``complete_message`` would raise for ``exc`` (the SDK's own mapping)."""
    try:
        error = await cast(Any, receiver)._handle_exception(exc)
    except Exception as raised:  # noqa: BLE001 - it raises what is not retryable
        return raised
    return error if isinstance(error, BaseException) else exc
