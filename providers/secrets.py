"""Secret values a provider learns at run time: session and access tokens, client assertions and
the Authorization values built from them. Whoever keeps texts clean subscribes (the worker's log
redactor does), so that an ERP error quoting one is stored, logged and printed masked, like the
connection's own credentials. Providers stay free of the worker: they only announce.
"""

from __future__ import annotations

from collections.abc import Callable

Sink = Callable[..., None]
_sinks: list[Sink] = []


def on_secret(sink: Sink) -> None:
    """``sink(*values)`` is told every secret value a provider learns from now on."""
    if sink not in _sinks:
        _sinks.append(sink)


def learned(*values: str | None) -> None:
    for sink in _sinks:
        sink(*values)


def learned_one(value: str) -> str:
    """``learned(value)``, then the value (for building a request in one expression)."""
    learned(value)
    return value
