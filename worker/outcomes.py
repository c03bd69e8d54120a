"""What the pipeline decides for a delivery; the runner turns it into a bus settlement."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Connection

from contracts import DeadLetterReason

Journal = Callable[[Connection], None]


@dataclass(frozen=True, slots=True)
class Complete:
    result: str  # created | updated | deleted | unchanged | duplicate
    journal: Journal | None = field(default=None, compare=False, repr=False)
    """The outcome journal still to commit, when the pipeline was asked to defer it: the runner
    commits it together with the settlement (one transaction on the local bus)."""


@dataclass(frozen=True, slots=True)
class Retry:
    delay_s: float
    attempt: int
    error: str


@dataclass(frozen=True, slots=True)
class DeadLetter:
    reason: DeadLetterReason
    description: str


@dataclass(frozen=True, slots=True)
class Abandon:
    error: str


Outcome = Complete | Retry | DeadLetter | Abandon
