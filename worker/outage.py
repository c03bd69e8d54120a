"""Riding out a database outage: tell "the database is not answering" from every other error, say
so once, wait with capped exponential backoff and jitter, and say once when it is back.

A restart of PostgreSQL (maintenance, failover) or a network cut is not any message's fault: the
work that met it waits and runs again once the database answers, instead of failing the message.
Work that must answer at once (a webhook call, an admin request) runs ``impatient()``: it fails
fast with ``DatabaseUnavailable`` and the listener answers 503 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import random
import time
from collections.abc import Awaitable, Callable, Iterator

from sqlalchemy import exc as sa_exc

from worker.logging import get_logger

log = get_logger()

_FIRST_WAIT_S = 0.1
_MAX_WAIT_S = 2.0  # resume within about two seconds of the database answering again

# Driver texts that mean "no connection" rather than "your statement is wrong" (psycopg, pyodbc,
# sqlite3). A statement error never matches, so it fails its message at once as before.
_UNREACHABLE_TEXTS = (
    "connection refused",
    "could not connect",
    "connection is closed",
    "connection already closed",
    "server closed the connection",
    "terminating connection",
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "consuming input failed",
    "connection socket closed",  # psycopg 3, a socket gone while waiting
    "the connection is lost",  # psycopg 3, a connection without a socket
    "ssl connection has been closed",
    "no route to host",
    "network is unreachable",
    "connection timed out",
    "timeout expired",
    "communication link failure",
    "tcp provider",
    "unable to open database file",
    "disk i/o error",
)


class DatabaseUnavailable(Exception):
    """The database is not answering (and the caller cannot wait, or waited long enough)."""


_impatient: contextvars.ContextVar[bool] = contextvars.ContextVar("cwi_db_impatient", default=False)


@contextlib.contextmanager
def impatient() -> Iterator[None]:
    """Database work in this context fails fast with DatabaseUnavailable during an outage."""
    token = _impatient.set(True)
    try:
        yield
    finally:
        _impatient.reset(token)


def is_impatient() -> bool:
    return _impatient.get()


def unreachable(exc: BaseException) -> bool:
    """True when ``exc`` says the database cannot be reached (not that a statement was wrong)."""
    if isinstance(exc, DatabaseUnavailable | ConnectionError):
        return True
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
        text = str(exc.orig if exc.orig is not None else exc).lower()
        return any(marker in text for marker in _UNREACHABLE_TEXTS)
    return isinstance(exc, sa_exc.TimeoutError)  # the pool could not hand out a connection


def one_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{exc.__class__.__name__}: {text[0] if text else ''}"[:300]


class Outage:
    """Whether the database answers, shared by everything that uses it; one waiter probes for all."""

    def __init__(self, probe: Callable[[], Awaitable[object]], *, exit_after_s: float | None = None) -> None:
        self._probe = probe
        self.exit_after_s = exit_after_s
        self.down_since: float | None = None
        self.cause: str | None = None
        self._recovered: asyncio.Future[None] | None = None
        self._prober: asyncio.Task[None] | None = None

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def went_down(self, exc: BaseException) -> None:
        if self.down_since is None:
            self.down_since = time.monotonic()
            self.cause = one_line(exc)
            log.warning("database unreachable; waiting for it", error=self.cause)

    def fail_fast(self) -> DatabaseUnavailable:
        return DatabaseUnavailable(f"the database is not answering ({self.cause or 'unreachable'})")

    async def wait(self, exc: BaseException) -> None:
        """Until the database answers again; DatabaseUnavailable after ``exit_after_s`` of outage."""
        self.went_down(exc)
        await self.recovered()

    async def _until_back(self, recovered: asyncio.Future[None]) -> None:
        pause = _FIRST_WAIT_S
        while True:
            await asyncio.sleep(pause * random.uniform(0.8, 1.2))
            pause = min(pause * 2, _MAX_WAIT_S)
            try:
                await self._probe()
            except Exception as exc:  # noqa: BLE001 - still down: keep probing, or give up
                if not unreachable(exc):
                    log.warning("database probe failed", error=one_line(exc))
                if self._overdue():
                    recovered.set_exception(
                        DatabaseUnavailable(
                            f"the database has not answered for {self.exit_after_s:g} s "
                            f"(CWI_OUTAGE_EXIT_S): {self.cause}"
                        )
                    )
                    return
                continue
            self.back()
            recovered.set_result(None)
            return

    async def recovered(self) -> None:
        """Return at once while the database answers; during an outage, once it is over (one probe
        loop for every waiter)."""
        if not self.down:
            return
        if self._recovered is None or self._recovered.done():
            loop = asyncio.get_running_loop()
            self._recovered = loop.create_future()
            self._prober = loop.create_task(self._until_back(self._recovered))
        await asyncio.shield(self._recovered)

    def _overdue(self) -> bool:
        return (
            self.exit_after_s is not None
            and self.down_since is not None
            and time.monotonic() - self.down_since > self.exit_after_s
        )

    def back(self) -> None:
        if self.down_since is not None:
            log.info("database back", down_for_s=round(time.monotonic() - self.down_since, 1))
            self.down_since = None
            self.cause = None
