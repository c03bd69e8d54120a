"""Durations as operators write them: ``90d``, ``12h``, ``30m``, ``45s``, ``2w`` (no SQLAlchemy here: the
settings read them too)."""

from __future__ import annotations

import datetime as dt
import re

_DURATION = re.compile(r"^\s*(\d+)\s*([wdhms])\s*$", re.IGNORECASE)
_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


class BadDuration(ValueError):
    pass


def parse_duration(text: str) -> dt.timedelta:
    """``90d`` → 90 days; a number with one unit (w, d, h, m, s), more than zero."""
    found = _DURATION.match(text)
    if found is None or int(found.group(1)) == 0:
        raise BadDuration(
            f"must be a duration like 90d, 12h or 30m (a number above 0 and w, d, h, m or s), not {text!r}"
        )
    amount, unit = int(found.group(1)), found.group(2).lower()
    try:
        return dt.timedelta(**{_UNITS[unit]: amount})
    except OverflowError:
        raise BadDuration(f"{text!r} is too long a duration") from None


def format_duration(value: dt.timedelta) -> str:
    """The shortest of ``parse_duration``'s spellings for ``value``."""
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
