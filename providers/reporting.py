"""What the providers' HTTP does, told to whoever listens (the worker's metrics): every ERP answer
with its latency, every 429, every wait for a rate limit. Like ``providers.secrets``, providers stay
free of the worker: they only announce, through the connection's throttle (``providers.http``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

Limit = Literal["erp", "cap"]
"""Whose limit a request waited for: the ERP's window (closed by a 429 or "none left"), or our own
cap (the connection's setting ``max_requests_per_minute``)."""


@dataclass(frozen=True, slots=True)
class Connection:
    """Whose requests: the provider kind and the client the connection belongs to."""

    kind: str
    client_id: str


class HttpReporter(Protocol):
    def answered(self, conn: Connection, method: str, status: int | None, seconds: float) -> None:
        """A request finished: its status, or None when no answer came (network failure, timeout)."""
        ...

    def rate_limited(self, conn: Connection) -> None:
        """The ERP answered 429."""
        ...

    def waited(self, conn: Connection, seconds: float, limit: Limit) -> None:
        """A request waited ``seconds`` for a rate limit before it could go."""
        ...


_reporters: list[HttpReporter] = []


def on_http(reporter: HttpReporter) -> Callable[[], None]:
    """``reporter`` is told about every provider request from now on; call the result to stop."""
    _reporters.append(reporter)

    def stop() -> None:
        if reporter in _reporters:
            _reporters.remove(reporter)

    return stop


def answered(conn: Connection | None, method: str, status: int | None, seconds: float) -> None:
    if conn is not None:
        for reporter in _reporters:
            reporter.answered(conn, method, status, seconds)


def rate_limited(conn: Connection | None) -> None:
    if conn is not None:
        for reporter in _reporters:
            reporter.rate_limited(conn)


def waited(conn: Connection | None, seconds: float, limit: Limit) -> None:
    if conn is not None and seconds > 0:
        for reporter in _reporters:
            reporter.waited(conn, seconds, limit)
