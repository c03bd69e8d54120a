"""The benchmarks' numeric options, checked as they are read: a value out of range is argparse's
one line naming the option (``argument --events: from 1 to 10000000, not 0``), never a traceback
midway or a run of nonsense. The bounds are ``cwi bench``'s where an option is the same."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import TypeVar

from config_db.durations import parse_duration
from worker.dev import MAX_EVENTS, MAX_LATENCY_MS
from worker.settings import MAX_CONCURRENCY

N = TypeVar("N", int, float)

__all__ = ["duration", "load_options", "number", "whole"]


def whole(low: int, high: int) -> Callable[[str], int]:
    """An argparse ``type``: a whole number from ``low`` to ``high``."""
    return _ranged(int, "a whole number", low, high)


def number(low: float, high: float) -> Callable[[str], float]:
    """An argparse ``type``: a finite number from ``low`` to ``high``."""
    return _ranged(float, "a number", low, high)


def _ranged(kind: Callable[[str], N], what: str, low: N, high: N) -> Callable[[str], N]:
    def parse(text: str) -> N:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        if (isinstance(value, float) and not math.isfinite(value)) or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"from {_shown(low)} to {_shown(high)}, not {text}")
        return value

    return parse


def _shown(bound: float) -> str:
    return str(bound) if isinstance(bound, int) else f"{bound:g}"


def duration(text: str) -> str:
    """An argparse ``type``: an age like ``90d`` (``config_db.durations``), kept as written."""
    try:
        parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def load_options(parser: argparse.ArgumentParser, *, events: int, concurrency: int = 16) -> None:
    """``--events``, ``--concurrency`` and ``--latency-ms``, as every load generator here takes them."""
    parser.add_argument("--events", type=whole(1, MAX_EVENTS), default=events)
    parser.add_argument("--concurrency", type=whole(1, MAX_CONCURRENCY), default=concurrency)
    parser.add_argument("--latency-ms", type=number(0.0, MAX_LATENCY_MS), default=0.0)
