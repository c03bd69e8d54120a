"""One request plan for ``push`` and ``preview``, so the two cannot drift.

A provider writes its push once, against a ``Plan``: every lookup of a reference (a customer's id,
a country's id), every read of the record as the ERP holds it, and every write goes through it.
``Live`` does them. ``Dry`` sends nothing: a reference becomes a placeholder naming it
(``<id of customer 1001>``), the record is taken not to exist yet (so the preview shows a
create), or to exist as ``assume`` says (a delete), and each write is recorded, with its secrets
redacted, as ``cwi preview`` prints it, answered with what the provider says the ERP would answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from providers.base import PreparedRequest

T = TypeVar("T")


def placeholder(what: str) -> str:
    return f"<{what}>"


def is_placeholder(value: str) -> bool:
    return value.startswith("<") and value.endswith(">")


class Plan(Protocol):
    async def reference(self, what: str, find: Callable[[], Awaitable[Any]]) -> Any:
        """The id ``find`` looks up; ``what`` names it for a preview ("id of customer 1001")."""
        ...

    async def existing(self, find: Callable[[], Awaitable[T | None]], assume: T | None = None) -> T | None:
        """The record as the ERP holds it (``find``); a preview assumes ``assume``."""
        ...

    async def write(self, request: PreparedRequest, send: Callable[[], Awaitable[T]], answer: T) -> T:
        """Send one write (``send``); ``request`` is how it shows, ``answer`` what a preview pretends."""
        ...


class Live:
    async def reference(self, what: str, find: Callable[[], Awaitable[Any]]) -> Any:
        return await find()

    async def existing(self, find: Callable[[], Awaitable[T | None]], assume: T | None = None) -> T | None:
        return await find()

    async def write(self, request: PreparedRequest, send: Callable[[], Awaitable[T]], answer: T) -> T:
        return await send()


class Dry:
    """Records the writes; never awaits anything (``providers.vendor.run_dry`` runs it)."""

    def __init__(self) -> None:
        self.requests: list[PreparedRequest] = []

    async def reference(self, what: str, find: Callable[[], Awaitable[Any]]) -> Any:
        return placeholder(what)

    async def existing(self, find: Callable[[], Awaitable[T | None]], assume: T | None = None) -> T | None:
        return assume

    async def write(self, request: PreparedRequest, send: Callable[[], Awaitable[T]], answer: T) -> T:
        self.requests.append(request)
        return answer


LIVE = Live()
