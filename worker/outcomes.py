"""What the pipeline decides for a delivery; the runner turns it into a bus settlement."""

from __future__ import annotations

from dataclasses import dataclass

from contracts import DeadLetterReason


@dataclass(frozen=True, slots=True)
class Complete:
    result: str  # created | updated | deleted | unchanged | duplicate


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
