"""``cwi status``: Service Bus cannot count locked messages, so it says n/a rather than 0."""

from __future__ import annotations

from io import StringIO

from rich.console import Console

from worker.buses.base import BusStats
from worker.cli.messages import status_data, status_table

STATS = BusStats(
    active=3, scheduled=1, locked=0, dead_lettered=2, dead_lettered_by_reason={"UnknownClient": 2}
)


def rendered(data: dict[str, object]) -> str:
    out = StringIO()
    Console(file=out, width=80).print(status_table(data))
    return out.getvalue()


def test_azure_says_locked_is_not_available() -> None:
    data = status_data("azure", STATS)
    assert data["locked"] is None
    line = next(row for row in rendered(data).splitlines() if "locked" in row)
    assert "n/a" in line and "0" not in line


def test_the_local_bus_counts_locked_messages() -> None:
    data = status_data("local", STATS)
    assert (data["active"], data["locked"], data["dead_lettered"]) == (3, 0, 2)
    text = rendered(data)
    assert "n/a" not in text and "UnknownClient" in text
