"""The SDK's errors translated into the Bus protocol's: lock lost, connection lost, no rights."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from azure.servicebus.aio import ServiceBusReceiver
from azure.servicebus.exceptions import (
    MessageLockLostError,
    OperationTimeoutError,
    ServiceBusCommunicationError,
    ServiceBusConnectionError,
    ServiceBusError,
    ServiceBusServerBusyError,
    SessionCannotBeLockedError,
    SessionLockLostError,
)
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_delay
from tenacity.wait import wait_exponential_jitter

from worker.buses.base import BusStatsUnavailable, LockLostError
from worker.logging import get_logger

log = get_logger()

# Errors after which the SDK reconnects on the next call: receive backs off and tries again.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    ServiceBusConnectionError,
    ServiceBusCommunicationError,
    ServiceBusServerBusyError,
    OperationTimeoutError,
)
NO_SESSION_ERRORS = (OperationTimeoutError, SessionCannotBeLockedError)


class StatsUnavailableError(BusStatsUnavailable):
    """Counts cannot be read (no Manage rights, or no management endpoint); the message says why."""


class DeadLetterLockedError(Exception):
    """The dead letter is there but another receiver holds its lock for now."""


class SettlementUnconfirmedError(LockLostError):
    """The connection failed during settlement: if the settlement did not apply, it is redelivered."""


@contextlib.contextmanager
def lock_errors(message_id: str) -> Iterator[None]:
    """Translate the SDK's "this lock is gone" errors into LockLostError (the runner's contract)."""
    try:
        yield
    except (MessageLockLostError, SessionLockLostError) as exc:
        raise LockLostError(f"lock on message {message_id} expired or was taken over") from exc
    except ValueError as exc:
        # MessageAlreadySettled, or the receiver was shut down (reconnect, session released).
        raise LockLostError(f"message {message_id} can no longer be settled: {exc}") from exc
    except ServiceBusError as exc:
        # A lost connection, or the SDK failing to reopen one (concurrent settlements after a drop
        # race in its management-link fallback): whether it applied is unknown, so let it go.
        raise SettlementUnconfirmedError(
            f"settling message {message_id} failed ({exc.__class__.__name__}); "
            "it is redelivered unless it applied"
        ) from exc


def reconnecting(reconnect_s: float, what: str) -> AsyncRetrying:
    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            "service bus unreachable, retrying", operation=what, attempt=state.attempt_number, error=str(exc)
        )

    return AsyncRetrying(
        retry=retry_if_exception_type(TRANSIENT_ERRORS),
        wait=wait_exponential_jitter(multiplier=0.2, max=15.0, jitter=0.2),
        stop=stop_after_delay(reconnect_s),
        before_sleep=before_sleep,
        reraise=True,
    )


@contextlib.contextmanager
def handler_failures_as_connection_loss() -> Iterator[None]:
    """The SDK wraps its own internal errors in a bare ServiceBusError ("Handler failed: …") and
    shuts the handler down; after a dropped connection its reconnect races produce such errors.
    A fresh handler works, so receiving treats them as a lost connection and retries."""
    try:
        yield
    except ServiceBusError as exc:
        if type(exc) is not ServiceBusError:
            raise
        raise ServiceBusConnectionError(message=str(exc), error=exc) from exc


async def close_quietly(receiver: ServiceBusReceiver) -> None:
    try:
        await receiver.close()
    except Exception as exc:  # noqa: BLE001 - closing is best effort; the service drops the link anyway
        log.debug("closing a receiver failed", error=str(exc))
