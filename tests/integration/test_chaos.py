"""The chaos test (issue 10): thousands of events over dozens of clients (creates, updates and deletes
of records, each record's events in increasing ``sequence``) through real ``cwi run`` processes
SIGKILLed at random and restarted, against an ERP that faults about 20 % of requests in every way
(tests/chaos/erp.py). On the local bus (SQLite, one process at a time; PostgreSQL, two competing
processes) and on the Service Bus test peer (a queue, and a session queue; two processes).

Asserted: nothing lost (every record's final ERP value is its newest CW value, deleted ones are
gone), no double create, no stale write (each record received its values in increasing sequence,
none twice), nothing dead-lettered, no task that died unseen. ``make test`` runs a small run of
each (marked slow); ``CWI_CHAOS_FULL=1`` runs the full size (or ``bench/chaos.py``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.chaos.check import assert_clean, report
from tests.chaos.plan import Size
from tests.chaos.run import Chaos, run

FULL = os.environ.get("CWI_CHAOS_FULL", "") not in ("", "0")
SMALL, SMALL_KILLS = Size(clients=8, records=5), 3
LARGE, LARGE_KILLS = Size(clients=40, records=25), 25


@pytest.mark.slow
@pytest.mark.parametrize(
    "bus",
    [
        "local-sqlite",
        pytest.param("local-postgres", marks=pytest.mark.postgres),
        "azure",
        "azure-sessions",
    ],
)
def test_chaos(bus: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if bus == "local-postgres":
        db_url = request.getfixturevalue("postgres_server")
    else:
        db_url = f"sqlite:///{tmp_path / 'cwi.db'}"
    size, kills = (LARGE, LARGE_KILLS) if FULL else (SMALL, SMALL_KILLS)
    outcome = run(Chaos(bus, size, kills), db_url, tmp_path)
    numbers = report(outcome)
    print(json.dumps({"bus": bus, **numbers}))  # shown with -s, and in the report of a failure
    assert numbers["kills"] == kills and numbers["erp_faults"], numbers
    assert_clean(numbers, outcome)
