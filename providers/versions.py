"""Vendor record versions compared by their real type (echo suppression, per-record order).

Each provider kind declares its ``version_kind``: ``integer`` (Tripletex's and generic REST's
counters), ``timestamp`` (ISO 8601 date-times: Visma.net's lastModifiedDateTime, Uni's UpdatedAt)
or ``opaque`` (tokens that can only be told equal or not).
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

VersionKind = Literal["integer", "timestamp", "opaque"]
VERSION_KINDS: tuple[VersionKind, ...] = ("integer", "timestamp", "opaque")


def _integer(text: str) -> int | None:
    text = text.strip()
    digits = text.removeprefix("-")
    return int(text) if digits.isdigit() else None


def _timestamp(text: str) -> dt.datetime | None:
    """An ISO 8601 date-time; ``Z`` or an offset, or none (read as UTC, as both vendors mean it)."""
    try:
        # Python 3.11 reads "Z" and offsets itself; a bare date becomes midnight.
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def _sign(difference: int | float | dt.timedelta) -> int:
    if isinstance(difference, dt.timedelta):
        difference = difference.total_seconds()
    return (difference > 0) - (difference < 0)


def compare_versions(kind: VersionKind, a: str, b: str) -> int | None:
    """Negative when ``a`` is older than ``b``, 0 when they are the same version, positive when newer.

    None when the two cannot be ordered: opaque versions that differ, or a value that does not
    parse as the kind says (a version we cannot read is never taken to be older).
    """
    if a == b:
        return 0
    if kind == "integer":
        left, right = _integer(a), _integer(b)
        return None if left is None or right is None else _sign(left - right)
    if kind == "timestamp":
        first, second = _timestamp(a), _timestamp(b)
        return None if first is None or second is None else _sign(first - second)
    return None
