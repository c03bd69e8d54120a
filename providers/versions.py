"""Vendor record versions compared by what they are: integers, ISO 8601 timestamps, or opaque tokens."""

from __future__ import annotations

import datetime as dt
from typing import Literal

VersionKind = Literal["integer", "timestamp", "opaque"]


def _timestamp(raw: str) -> dt.datetime | None:
    try:
        parsed = dt.datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


def compare_versions(kind: VersionKind, a: str | None, b: str | None) -> int | None:
    """Negative when ``a`` is older than ``b``, 0 when equal, positive when newer; None when the two
    cannot be ordered (opaque and different, missing, or unreadable)."""
    if a is None or b is None:
        return None
    if a == b:
        return 0
    if kind == "integer":
        if not (a.strip().lstrip("-").isdigit() and b.strip().lstrip("-").isdigit()):
            return None
        x, y = int(a), int(b)
    elif kind == "timestamp":
        ta, tb = _timestamp(a), _timestamp(b)
        if ta is None or tb is None:
            return None
        return (ta > tb) - (ta < tb)
    else:
        return None
    return (x > y) - (x < y)
