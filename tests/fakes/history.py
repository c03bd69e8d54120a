"""What a fake ERP was asked to write through its API (ours, never a user's), in order.

The burst test counts ping-pong from it: a value that a user made in the ERP and that we then
wrote back to the ERP is a write caused by our own inbound write.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class ApiWrite:
    kind: str
    """The fake's own name of the collection (``customer``, ``customers`` …)."""
    key: str
    """The record's key in the fake (Tripletex id, Visma number, Uni ID)."""
    action: str
    """``created``, ``updated`` or ``deleted``."""
    value: dict[str, Any] | None
    """The record as stored after the write (None for a delete)."""


@dataclass
class WriteLog:
    writes: list[ApiWrite] = field(default_factory=list)

    def add(self, kind: str, key: object, action: str, value: dict[str, Any] | None = None) -> None:
        self.writes.append(ApiWrite(kind, str(key), action, copy.deepcopy(value)))
