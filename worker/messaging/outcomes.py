"""What handling a delivery decided; the runner turns it into a bus settlement.

Every outcome carries its ``journal``: the sync-log steps (outcome row, record link, echo marks,
inbox, the record's lease let go) that the runner commits together with the settlement, in one
transaction on the local bus, and just before it on Service Bus.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from contracts import DeadLetterReason
from worker.db import Journal


@dataclass(frozen=True, slots=True)
class Complete:
    result: str  # created | updated | deleted | unchanged | duplicate | superseded | echo_ignored | inbound
    journal: Journal | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Retry:
    """Try the message again after ``delay_s``, keeping its place in its session.

    ``attempt`` is the delayed-retry count the next delivery carries; a retry that is not the
    message's fault (its record was busy) keeps the count it had."""

    delay_s: float
    attempt: int
    error: str
    journal: Journal | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    reason: DeadLetterReason
    description: str
    journal: Journal | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Abandon:
    """Let the message go without a decision: it is redelivered (shutdown, an unexpected error)."""

    error: str
    journal: Journal | None = field(default=None, compare=False, repr=False)


Outcome = Complete | Retry | DeadLetter | Abandon
