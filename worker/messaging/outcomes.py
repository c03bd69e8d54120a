"""What handling a delivery decided; the runner turns it into a bus settlement.

Every outcome carries its ``journal``: the sync-log steps (outcome row, record link, echo marks,
inbox, the record's lease let go) that the runner commits together with the settlement, in one
transaction on the local bus, and just before it on Service Bus.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from contracts import DeadLetterReason, Envelope
from worker.db import Journal


@dataclass(frozen=True, slots=True)
class Changed:
    """A change of a CW record that a message carried through, for the webhooks publisher
    (``worker/publisher``): the envelope (a thin event's filled in), the CW record's id, and for an
    inbound write the CW fields written (``None``: the envelope's own ``data``)."""

    envelope: Envelope
    cw_id: str
    fields: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Complete:
    result: str  # created | updated | deleted | unchanged | duplicate | superseded | echo_ignored | inbound
    journal: Journal | None = field(default=None, compare=False, repr=False)
    changed: Changed | None = field(default=None, compare=False, repr=False)
    """Set when the message carried a CW change through (pushed, or written to CW)."""


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
