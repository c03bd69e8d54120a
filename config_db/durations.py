"""Durations as operators write them: ``90d``, ``12h``, ``30m``, ``45s``, ``2w`` (no SQLAlchemy here: the
settings read them too)."""

from __future__ import annotations

import datetime as dt
import re

_DURATION = re.compile(r"^\s*(\d+)\s*([wdhms])\s*$", re.IGNORECASE)
_SECONDS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
LONGEST = dt.timedelta(days=36500)
"""A hundred years: a longer duration is a typing slip (and its start would be before year 1)."""


class BadDuration(ValueError):
    pass


def parse_duration(text: str, *, zero: bool = False) -> dt.timedelta:
    """``90d`` → 90 days; a number with one unit (w, d, h, m, s), more than zero unless ``zero``,
    at most ``LONGEST``."""
    found = _DURATION.match(text)
    if found is None or (int(found.group(1)) == 0 and not zero):
        number = "a number" if zero else "a number above 0"
        raise BadDuration(
            f"must be a duration like 90d, 12h or 30m ({number} and w, d, h, m or s), not {text!r}"
        )
    seconds = int(found.group(1)) * _SECONDS[found.group(2).lower()]
    if seconds > LONGEST.total_seconds():
        raise BadDuration(f"must be at most {LONGEST.days}d (a hundred years), not {text!r}")
    return dt.timedelta(seconds=seconds)


def format_duration(value: dt.timedelta) -> str:
    """The shortest of ``parse_duration``'s spellings for ``value``."""
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
