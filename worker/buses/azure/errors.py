"""The SDK's errors translated into the Bus protocol's: lock lost, connection lost, no rights."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from types import TracebackType

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
from tenacity import (
    AsyncRetrying,
    AttemptManager,
    RetryCallState,
    retry_if_exception_type,
    stop_after_delay,
)
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


class BrokerOutage:
    """Whether the namespace answers, shared by every receiver of the process: an outage is told in
    one line when it starts and one when it ends, however many receivers (one per session) retry
    meanwhile; each further attempt is a debug line."""

    def __init__(self) -> None:
        self.down_since: float | None = None

    def failed(self, what: str, attempt: int, exc: BaseException | None) -> None:
        if self.down_since is None:
            self.down_since = time.monotonic()
            log.warning("service bus unreachable; reconnecting", operation=what, error=str(exc))
        else:
            log.debug("service bus still unreachable", operation=what, attempt=attempt, error=str(exc))

    def answered(self) -> None:
        if self.down_since is not None:
            log.info("service bus back", down_for_s=round(time.monotonic() - self.down_since, 1))
            self.down_since = None


BROKER = BrokerOutage()


class _Attempt:
    """Tenacity's attempt, which tells ``BROKER`` when it succeeded (a caller may ``return`` from
    inside the attempt, leaving the retry loop without finishing it)."""

    def __init__(self, inner: AttemptManager) -> None:
        self._inner = inner

    def __enter__(self) -> None:
        self._inner.__enter__()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        if kind is None:
            BROKER.answered()
        return self._inner.__exit__(kind, exc, tb)


async def reconnecting(reconnect_s: float, what: str) -> AsyncIterator[_Attempt]:
    """Tenacity's attempts at ``what`` while the namespace is unreachable (capped exponential
    backoff with jitter, for up to ``reconnect_s``); the outage told once through ``BROKER``."""

    def before_sleep(state: RetryCallState) -> None:
        BROKER.failed(what, state.attempt_number, state.outcome.exception() if state.outcome else None)

    retrying = AsyncRetrying(
        retry=retry_if_exception_type(TRANSIENT_ERRORS),
        wait=wait_exponential_jitter(multiplier=0.2, max=15.0, jitter=0.2),
        stop=stop_after_delay(reconnect_s),
        before_sleep=before_sleep,
        reraise=True,
    )
    async for attempt in retrying:
        yield _Attempt(attempt)


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
